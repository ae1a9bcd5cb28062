import type { LoginRule } from "../../gen/ferry/access/v1/access_policy_pb.js";
import type { SecretBox } from "../auth/secret-box.js";

/**
 * A login rule's client secret at rest: sealed with the operator's keys and
 * bound to the tenant, the issuer and the client id, so a sealed secret
 * copied into another tenant's policy, or put next to another provider, does
 * not open.
 */
export function sealLoginSecret(box: SecretBox, login: LoginRule, tenant: string): void {
  if (login.clientSecret === "") return;
  login.clientSecretSealed = box.seal("login-client-secret", login.clientSecret, contextOf(login, tenant));
  login.clientSecret = "";
}

/**
 * The variables a tenant's clientSecretEnv may name: FERRY_LOGIN_<TENANT>_<NAME>, the tenant upper-cased with "-"
 * as "_", NAME letters and digits only. Whoever may set a tenant's policy picks the issuer the secret is sent to, so
 * any other name would let a tenant admin have the relay send its own secrets (FERRY_SECRET_KEY) there; and without
 * "_" in NAME, tenant "acme" cannot name FERRY_LOGIN_ACME_APP_SECRET, which is tenant "acme-app"'s.
 */
function loginSecretEnvPrefix(tenant: string): string {
  return `FERRY_LOGIN_${tenant.toUpperCase().replaceAll("-", "_")}_`;
}

/** Why `name` may not be a clientSecretEnv of `tenant`, or undefined when it may. */
export function loginSecretEnvProblem(name: string, tenant: string): string | undefined {
  const prefix = loginSecretEnvPrefix(tenant);
  if (name.startsWith(prefix) && /^[A-Z0-9]+$/.test(name.slice(prefix.length))) return undefined;
  return `login.clientSecretEnv must be ${prefix}NAME, NAME letters and digits only (this tenant's variables), not ${name}`;
}

/** The client secret to use: from the environment variable named, else opened. Throws (the rule then refuses everyone) when neither works. */
export function openLoginSecret(box: SecretBox, login: LoginRule, tenant: string, env: NodeJS.ProcessEnv): string {
  if (login.clientSecretEnv !== "") {
    const problem = loginSecretEnvProblem(login.clientSecretEnv, tenant);
    if (problem) throw new Error(problem);
    const value = env[login.clientSecretEnv];
    if (!value) throw new Error(`the environment variable ${login.clientSecretEnv} (login.clientSecretEnv) is not set on this node`);
    return value;
  }
  const secret = box.open("login-client-secret", login.clientSecretSealed, contextOf(login, tenant));
  if (secret === undefined) {
    throw new Error("the sealed client secret does not open with this node's secret keys (another key, or copied from another tenant or rule)");
  }
  return secret;
}

function contextOf(login: LoginRule, tenant: string): string {
  return `${tenant}\0${login.issuer}\0${login.clientId}`;
}
