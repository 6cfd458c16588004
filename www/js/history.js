// The frames of the current run, kept for scrubbing back and forth once it is paused or done:
// every frame while they fit a byte budget, then an even subset (every 2nd, 4th, … frame).

export class FrameHistory {
  constructor(budgetBytes = 48e6) {
    this.budget = budgetBytes;
    this.reset();
  }

  reset() {
    this.frames = [];
    this.bytes = 0;
    this.stride = 1;
    this.seen = 0;
    this.lastOffStride = false;
  }

  /** Keeps frames 0, s, 2s, … (s the stride) and always the newest one, so that the end of a run
   * can be scrubbed to; doubles s, dropping every other kept frame, when over budget. */
  add(frame) {
    const size = frame.sample.length + frame.prediction.length;
    if (this.lastOffStride) {
      this.frames.pop();
      this.bytes -= size;
    }
    this.frames.push(frame);
    this.bytes += size;
    this.seen += 1;
    while (this.bytes > this.budget && this.frames.length > 2) {
      const last = this.frames.length - 1;
      this.frames = this.frames.filter((_, i) => i % 2 === 0 || i === last);
      this.bytes = this.frames.length * size;
      this.stride *= 2;
    }
    this.lastOffStride = (this.seen - 1) % this.stride !== 0;
  }
}
