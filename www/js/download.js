// Downloads for the workers: a file's bytes with progress, and gzip files unpacked by the
// browser's own DecompressionStream.

/** The bytes at `url`; `progress(loaded, total)` after each chunk (`expectedBytes` stands in for
 * a missing Content-Length); `what` names the file in errors. */
export async function download(url, { expectedBytes = 0, progress = () => {}, what = 'the file' } = {}) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${what} ${url} could not be downloaded (HTTP ${response.status})`);
  const total = Number(response.headers.get('Content-Length')) || expectedBytes || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    progress(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** `bytes` gunzipped (as they are where the server already unpacked them: no gzip magic
 * number); `what` names them in the error if they are broken. */
export async function gunzip(bytes, what) {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (error) {
    throw new Error(`${what} is not a readable gzip file (${error.message})`);
  }
}
