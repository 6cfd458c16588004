"""Times one forward pass (one denoising step) of the same networks in PyTorch (diffusers'
UNet2DModel) and in emerge on burn's Flex backend, on this CPU, in one run, and prints the ratio.

    python tools/parity/peer_bench.py --emerge target/release/emerge [--runs 5]

Both sides use every core, random weights, a batch of zeros at t = 500 and the median of
`--runs` timed passes after one warm-up pass.
"""

import argparse
import os
import re
import statistics
import subprocess
import time

import torch
from diffusers import UNet2DModel

NETWORKS = {
    # emerge's `mnist` preset, written as diffusers' config
    "mnist": dict(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 128), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, norm_eps=1e-5,
        attention_head_dim=32, flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, num_class_embeds=11,
    ),
    # google/ddpm-cifar10-32, the DDPM paper's CIFAR-10 network (emerge's `ddpm-cifar10` preset)
    "ddpm-cifar10": dict(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32, norm_eps=1e-6,
        attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0,
    ),
}


def time_torch(config, batch, runs):
    model = UNet2DModel(**config).eval()
    size, channels = config["sample_size"], config["in_channels"]
    x = torch.zeros(batch, channels, size, size)
    t = torch.full((batch,), 500)
    labels = torch.full((batch,), 10) if config.get("num_class_embeds") else None
    times = []
    with torch.inference_mode():
        for run in range(runs + 1):
            started = time.perf_counter()
            model(x, t, class_labels=labels)
            if run > 0:
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), sum(p.numel() for p in model.parameters())


def time_emerge(binary, presets, batches, runs):
    out = subprocess.run(
        [binary, "bench", "--presets", ",".join(presets), "--batches", ",".join(map(str, batches)), "--runs", str(runs)],
        check=True, capture_output=True, text=True,
    ).stdout
    times = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[3] == "Flex (CPU)":
            times[(cells[0], int(cells[2]))] = float(cells[4])
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emerge", required=True, help="the emerge binary (release build)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(os.cpu_count())
    cpu = re.search(r"model name\s*:\s*(.+)", open("/proc/cpuinfo").read())
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} cores, {cpu.group(1) if cpu else 'CPU'}")
    emerge = time_emerge(args.emerge, list(NETWORKS), batches, args.runs)
    print(f"| network | parameters | batch | PyTorch (ms) | emerge on Flex (ms) | emerge / PyTorch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, config in NETWORKS.items():
        for batch in batches:
            torch_ms, parameters = time_torch(config, batch, args.runs)
            ours = emerge[(name, batch)]
            print(f"| {name} | {parameters:,} | {batch} | {torch_ms:.1f} | {ours:.1f} | {ours / torch_ms:.2f}× |")


if __name__ == "__main__":
    main()
