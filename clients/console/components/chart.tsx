/** One series over time as an SVG line, drawn here: a chart library would be most of the bundle. */
export function LineChart({ title, unit, points, labels }: { title: string; unit: string; points: number[]; labels: string[] }) {
  const w = 300;
  const h = 80;
  const max = Math.max(...points, 0) || 1;
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const path = points.map((v, i) => `${i === 0 ? "M" : "L"}${(i * step).toFixed(1)},${(h - (v / max) * h).toFixed(1)}`).join(" ");
  const last = points.at(-1) ?? 0;
  const id = title.replace(/\W+/g, "-").toLowerCase();
  return (
    <figure class="chart">
      <figcaption>
        {title}: <strong>{format(last)}</strong> {unit}
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h + 14}`} role="img" aria-labelledby={`${id}-t ${id}-d`}>
        <title id={`${id}-t`}>{title}</title>
        <desc id={`${id}-d`}>
          {`Last 15 minutes, up to ${format(max)} ${unit}; now ${format(last)} ${unit}.`}
        </desc>
        <line x1="0" y1={h} x2={w} y2={h} class="axis" />
        <path d={path} class="line" />
        <text x="0" y={h + 12} class="tick">
          {labels[0] ?? ""}
        </text>
        <text x={w} y={h + 12} class="tick end">
          {labels[1] ?? ""}
        </text>
        <text x="2" y="10" class="tick">
          {format(max)}
        </text>
      </svg>
    </figure>
  );
}

function format(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
