/** `{ [key]: value }` when value is set, else `{}`: keeps unset fields out of an object built by spreading. */
export function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
