// The query API client: every fetch the UI makes goes through here. Reads Jaeger's envelope
// {data,total,limit,offset,errors} and turns failures into ApiError with a readable message.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // HTTP status, or 0 when the server could not be reached
  }
}

async function getEnvelope(path, params, signal) {
  const url = new URL(path, location.origin);
  for (const [k, v] of params || []) if (v !== undefined && v !== null && v !== '') url.searchParams.append(k, v);
  let response;
  try {
    response = await fetch(url, { headers: { accept: 'application/json' }, signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(`Could not reach the meshtrace query API (${e.message}). Is the server running?`, 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The query API answered ${response.status} ${response.statusText} without JSON (${url.pathname}).`, response.status);
  }
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  if (!response.ok) {
    const msg = errors.map((e) => e.msg).join('; ') || response.statusText;
    throw new ApiError(msg, response.status);
  }
  return body;
}

/** Service names, sorted. */
export async function services(signal) {
  const body = await getEnvelope('/api/services', [], signal);
  return (body.data || []).slice().sort();
}

/** Operation names of a service, sorted. */
export async function operations(service, signal) {
  const body = await getEnvelope(`/api/services/${encodeURIComponent(service)}/operations`, [], signal);
  return (body.data || []).slice().sort();
}

/** Trace search; `params` is a list of [key, value] pairs as /api/traces takes them. */
export async function searchTraces(params, signal) {
  const body = await getEnvelope('/api/traces', params, signal);
  return body.data || [];
}

/** One trace by id, or throws ApiError (status 404 when unknown). */
export async function trace(id, signal) {
  const body = await getEnvelope(`/api/traces/${encodeURIComponent(id)}`, [], signal);
  const t = (body.data || [])[0];
  if (!t) throw new ApiError('trace not found', 404);
  return t;
}

/** Service dependency links [{parent, child, callCount}] for the window ending at endMs. */
export async function dependencies(endMs, lookbackMs, signal) {
  const body = await getEnvelope('/api/dependencies', [['endTs', String(endMs)], ['lookback', String(lookbackMs)]], signal);
  return body.data || [];
}
