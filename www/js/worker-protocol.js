// The workers' half of the page ↔ worker protocol (client.js is the page's): commands that
// report through status messages, and requests answered once each (`{status: 'reply', id,
// result | error}`), run one at a time through the worker's queue.

export const post = (message, transfer = []) => self.postMessage(message, transfer);
export const messageOf = (error) => (error && error.message) || String(error);

/** The pixel arrays of a result (itself, or its fields), handed over to the page instead of
 * copied. */
export const transferables = (result) =>
  ArrayBuffer.isView(result)
    ? [result.buffer]
    : result && typeof result === 'object'
      ? Object.values(result).filter((v) => ArrayBuffer.isView(v)).map((v) => v.buffer)
      : [];

/** Routes the page's messages: `{command, ...}` to `commands[command](message)`, its error to
 * `fail(command)(error)`; `{request, id, ...}` to `requests[request](fields)` through `enqueue`,
 * answered once, or refused with `notReady` while `ready()` is false. */
export function listen({ commands, requests, enqueue, ready, notReady, fail }) {
  async function answer({ request, id, ...fields }) {
    try {
      const handler = requests[request];
      if (!handler) throw new Error(`unknown request '${request}'`);
      if (!ready()) throw new Error(notReady);
      const result = await enqueue(() => handler(fields));
      post({ status: 'reply', id, result }, transferables(result));
    } catch (error) {
      post({ status: 'reply', id, error: messageOf(error) });
    }
  }
  self.onmessage = async ({ data }) => {
    if (data.request) return answer(data);
    try {
      const command = commands[data.command];
      if (!command) throw new Error(`unknown command '${data.command}'`);
      await command(data);
    } catch (error) {
      fail(data.command)(error);
    }
  };
}
