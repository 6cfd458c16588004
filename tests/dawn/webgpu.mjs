// Dawn (Chrome's WebGPU implementation, as the npm package `webgpu` ships it) as `navigator.gpu`
// in Node, for the page's modules outside the browser.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** `env` with the Vulkan loader pointed at the SwiftShader driver Debian's chromium package
 * ships, unless it names a driver already (a real GPU's) or there is none. */
export function withSwiftShader(env) {
  if (!env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) env.VK_ICD_FILENAMES = SWIFTSHADER;
  return env;
}

/** Dawn's `create` and `globals`: from a given dawn.node, else from the npm package. */
export async function loadDawn(path) {
  if (path) return createRequire(import.meta.url)(path);
  return import('webgpu');
}

/** What wgpu's WebGPU backend looks for: a worker-like global scope with `navigator.gpu`. */
export function installWebGpu({ create, globals }) {
  Object.assign(globalThis, globals);
  const gpu = create([]);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  globalThis.WorkerGlobalScope ??= class WorkerGlobalScope {};
  return gpu;
}
