// The kinds the server knows (GET /apis), fetched once.
import { api } from "./api.js";

let cache = null;

export async function allKinds() {
  if (!cache) cache = api("/apis").then((r) => r.kinds).catch((e) => { cache = null; throw e; });
  return cache;
}

export async function byPlural(plural) {
  const found = (await allKinds()).find((k) => k.plural === plural);
  if (!found) throw new Error(`unknown kind ${plural}`);
  return found;
}

export async function byKind(kind) {
  return (await allKinds()).find((k) => k.kind === kind || k.fullName === kind || k.plural === kind);
}

export const FT_GROUP = "fault-tolerance.opensergo.io";
export const INSTANCE_KIND = "ServiceInstance";
export const CONTRACT_KIND = "ServiceContract";
