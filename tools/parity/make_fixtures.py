"""Writes the fixtures that prove emerge matches Hugging Face diffusers, the reference DDPM code.

For each UNet configuration it builds a diffusers `UNet2DModel` with random weights, saves it as a
diffusers checkpoint directory (config.json + weights), and records inputs, timesteps, labels and
the model's output in `parity.json`. For the samplers it drives diffusers' `DDPMScheduler`,
`DDIMScheduler` and `DPMSolverMultistepScheduler` (DPM-Solver++(2M) and its SDE variant) with
recorded model outputs and recorded noise and stores every step.
The Rust tests (`cargo test -p emerge --test parity`) import the checkpoints with `emerge import`
and must reproduce every number.

Run once by hand, in a virtual environment (see tools/parity/README.md):
    python tools/parity/make_fixtures.py crates/emerge/tests/fixtures/diffusers
    python tools/parity/make_fixtures.py --cifar10 /tmp/ddpm-cifar10-random   # 143 MB, opt-in
    python tools/parity/make_fixtures.py --schedulers-only crates/emerge/tests/fixtures/diffusers
"""

import argparse
import copy
import json
import math
import os

import numpy as np

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from safetensors.torch import save_file

# Small configurations that between them cover every option emerge maps (each committed).
SMALL = {
    # Two levels, multi-head attention, [cos, sin] embedding, class labels with a null class;
    # saved as a PyTorch pickle (.bin) to exercise that reader.
    "tiny-conditional": dict(
        config=dict(
            sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=8, norm_eps=1e-5, attention_head_dim=8, flip_sin_to_cos=True, freq_shift=0,
            downsample_padding=1, num_class_embeds=11,
        ),
        batch=dict(timesteps=[999, 37, 0], class_labels=[3, 10, 7]),
        format="bin",
        deprecated_attention_names=False,
    ),
    # The DDPM paper's CIFAR-10 layout (3x32x32, four levels, attention at 16x16, one head,
    # [sin, cos] with shift 1, TensorFlow-style downsampling padding, eps 1e-6), narrower; saved
    # like the google/ddpm-* checkpoints, with the old attention key names (query/key/value/proj_attn).
    "cifar10-layout": None,  # filled in below from CIFAR10
}

# google/ddpm-cifar10-32's configuration, random weights (143 MB: not committed).
CIFAR10 = dict(
    config=dict(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32, norm_eps=1e-6, attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1,
        downsample_padding=0,
    ),
    batch=dict(timesteps=[999, 500], class_labels=None),
    format="safetensors",
    deprecated_attention_names=True,
    scheduler=dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000,
                   variance_type="fixed_small", clip_sample=True),
)

SMALL["cifar10-layout"] = dict(CIFAR10, config=dict(CIFAR10["config"], block_out_channels=(16, 32, 32, 32), norm_num_groups=8))

DEPRECATED = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def flat(t):
    """A tensor as a flat list; 9 significant digits round-trip every float32 exactly."""
    return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]


def randomize(model, generator):
    """PyTorch's default init leaves GroupNorm at (1, 0); perturb every parameter a little so
    that a swapped or untransposed tensor cannot go unnoticed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.add_(0.02 * torch.randn(p.shape, generator=generator))


def write_unet(name, spec, out_dir, seed):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = UNet2DModel(**spec["config"]).eval()
    randomize(model, generator)
    directory = os.path.join(out_dir, name)
    os.makedirs(directory, exist_ok=True)
    model.save_config(directory)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if spec["deprecated_attention_names"]:
        renamed = {}
        for key, value in state.items():
            for new, old in DEPRECATED.items():
                key = key.replace(new, old)
            renamed[key] = value
        state = renamed
    if spec["format"] == "bin":
        torch.save(state, os.path.join(directory, "diffusion_pytorch_model.bin"))
    else:
        save_file(state, os.path.join(directory, "diffusion_pytorch_model.safetensors"))
    if "scheduler" in spec:
        DDPMScheduler(**spec["scheduler"]).save_config(directory)

    c = spec["config"]
    timesteps = spec["batch"]["timesteps"]
    labels = spec["batch"]["class_labels"]
    sample = torch.randn((len(timesteps), c["in_channels"], c["sample_size"], c["sample_size"]), generator=generator)
    with torch.no_grad():
        output = model(
            sample,
            torch.tensor(timesteps),
            class_labels=None if labels is None else torch.tensor(labels),
        ).sample
    with open(os.path.join(directory, "parity.json"), "w") as f:
        json.dump(dict(shape=list(sample.shape), sample=flat(sample), timesteps=timesteps, class_labels=labels,
                       output=flat(output), parameters=sum(p.numel() for p in model.parameters())), f)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, output std {output.std():.3f}")


def scheduler_cases():
    """(name, scheduler, steps, eta, shape, emerge's sampler or None for DDPM/DDIM)."""
    common = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", clip_sample=True)
    small, single = (2, 1, 4, 4), (1, 1, 2, 2)
    yield "ddpm-fixed-small", DDPMScheduler(**common, variance_type="fixed_small"), 50, None, small, None
    yield "ddpm-fixed-large", DDPMScheduler(**common, variance_type="fixed_large"), 50, None, small, None
    # all T = 1000 steps of the cosine schedule, on a 2x2 image to keep the fixture small
    cosine = {**common, "beta_schedule": "squaredcos_cap_v2"}
    yield "ddpm-cosine-all-steps", DDPMScheduler(**cosine, variance_type="fixed_small"), 1000, None, single, None
    yield "ddim-eta0", DDIMScheduler(**common), 20, 0.0, small, None
    yield "ddim-eta1", DDIMScheduler(**common), 20, 1.0, small, None
    # DPM-Solver++(2M), its defaults (linspace spacing, last step to sigma = 0, first order there),
    # with x0 clipped to [-1, 1] as emerge's schedules do: dynamic thresholding whose range is
    # capped at sample_max_value = 1 is exactly that clipping.
    for name, config, steps in [("linear", common, 20), ("cosine", cosine, 10)]:
        dpm = {k: v for k, v in config.items() if k != "clip_sample"}
        dpm.update(thresholding=True, sample_max_value=1.0)
        for algorithm, kind in [("dpmsolver++", "dpmpp_2m"), ("sde-dpmsolver++", "sde_dpmpp_2m")]:
            scheduler = DPMSolverMultistepScheduler(**dpm, algorithm_type=algorithm)
            yield f"{kind.replace('_', '-')}-{name}", scheduler, steps, None, small, dict(kind=kind)


def exact_alphas_cumprod(config):
    """ᾱ_t in float64. diffusers keeps its tables in float32, whose rounding dominates near t = 0
    (β_t = 1 − ᾱ_t/ᾱ_{t−1} loses three digits there); the float64 run shows the step math alone."""
    T = config["num_train_timesteps"]
    if config["beta_schedule"] == "linear":
        betas = np.linspace(config["beta_start"], config["beta_end"], T, dtype=np.float64)
    else:  # squaredcos_cap_v2, as diffusers' betas_for_alpha_bar
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    return torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float64)


def in_float64(scheduler):
    """The same diffusers scheduler, its tables exact and its arithmetic in float64. (DPMSolver-
    MultistepScheduler stores the sample in float32 between steps, a 6e-8 relative rounding.)"""
    scheduler = copy.deepcopy(scheduler)
    scheduler.alphas_cumprod = exact_alphas_cumprod(scheduler.config)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(scheduler, "final_alpha_cumprod"):
        scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        # its sigmas are cast to float32 in set_timesteps: sigma_t = sqrt((1 - a_t)/a_t), exact
        ac = scheduler.alphas_cumprod.numpy()
        sigmas = np.sqrt((1 - ac) / ac)[scheduler.timesteps.numpy()]
        scheduler.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]))
    return scheduler


def run_scheduler(scheduler, eta, sample, inputs):
    """Drives `scheduler` over its timesteps with the recorded (ε, noise) pairs of `inputs`.
    DDIMScheduler.step and DPMSolverMultistepScheduler.step take the noise as `variance_noise`;
    DDPMScheduler.step draws its own with diffusers' `randn_tensor`, which is pointed at the
    recorded noise meanwhile. DPMSolverMultistepScheduler returns no x0: it is the (clipped) data
    prediction it keeps for the next step, `model_outputs[-1]`."""
    from diffusers.schedulers import scheduling_ddpm

    trajectory = []
    drawn = {}
    original = scheduling_ddpm.randn_tensor
    scheduling_ddpm.randn_tensor = lambda shape, generator=None, device=None, dtype=None, **_: drawn["noise"].to(dtype)
    try:
        for t, (model_output, noise) in zip(scheduler.timesteps, inputs):
            model_output, noise = model_output.to(sample.dtype), noise.to(sample.dtype)
            if isinstance(scheduler, DPMSolverMultistepScheduler):
                out = scheduler.step(model_output, t, sample, variance_noise=noise)
                pred_original_sample = scheduler.model_outputs[-1]
            elif eta is None:
                drawn["noise"] = noise
                out = scheduler.step(model_output, t, sample)
                pred_original_sample = out.pred_original_sample
            else:
                out = scheduler.step(model_output, t, sample, eta=eta, variance_noise=noise)
                pred_original_sample = out.pred_original_sample
            trajectory.append(dict(prev_sample=flat(out.prev_sample), pred_original_sample=flat(pred_original_sample)))
            sample = out.prev_sample
    finally:
        scheduling_ddpm.randn_tensor = original
    return trajectory


def write_schedulers(out_dir, seed):
    """Every step of each sampler, with recorded ε and noise, in float32 (diffusers as shipped)
    and in float64."""
    cases = []
    for name, scheduler, steps, eta, shape, sampler in scheduler_cases():
        generator = torch.Generator().manual_seed(seed)
        scheduler.set_timesteps(steps)
        initial = torch.randn(shape, generator=generator)
        # a plausible ε with a few large values so that x̂_0 clipping is exercised, and z ~ N(0, I)
        inputs = [(torch.randn(shape, generator=generator) * 1.5, torch.randn(shape, generator=generator))
                  for _ in scheduler.timesteps]
        exact = in_float64(scheduler)  # before the float32 run changes the scheduler's state
        f32 = run_scheduler(scheduler, eta, initial, inputs)
        f64 = run_scheduler(exact, eta, initial.to(torch.float64), inputs)
        # (JSON has no infinities: DPMSolverMultistepScheduler's lambda_min_clipped = -inf is left out)
        config = {k: v for k, v in scheduler.config.items()
                  if not k.startswith("_") and not (isinstance(v, float) and not math.isfinite(v))}
        if sampler is not None:  # emerge reads the schedule from the config, clipping included
            config = dict(config, clip_sample=True, thresholding=False, variance_type="fixed_small")
        record = dict(name=name, config=config, steps=steps, sampler=sampler,
                      eta=eta, shape=list(shape), initial=flat(initial), timesteps=[int(t) for t in scheduler.timesteps],
                      alphas_cumprod=flat(scheduler.alphas_cumprod),
                      trajectory=[dict(model_output=flat(mo), noise=flat(n), prev_sample=a["prev_sample"],
                                       pred_original_sample=a["pred_original_sample"], prev_sample_f64=b["prev_sample"],
                                       pred_original_sample_f64=b["pred_original_sample"])
                                  for (mo, n), a, b in zip(inputs, f32, f64)])
        cases.append(record)
        print(f"scheduler {name}: {len(record['trajectory'])} steps")
    with open(os.path.join(out_dir, "schedulers.json"), "w") as f:
        json.dump(cases, f, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="directory to write the fixtures to")
    parser.add_argument("--cifar10", action="store_true",
                        help="write only the full-size google/ddpm-cifar10-32 configuration (143 MB)")
    parser.add_argument("--schedulers-only", action="store_true",
                        help="write only schedulers.json (the UNet fixtures are left as they are)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import diffusers
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}")
    if args.cifar10:
        write_unet("ddpm-cifar10-32-random", CIFAR10, args.out, args.seed)
        return
    if not args.schedulers_only:
        for i, (name, spec) in enumerate(SMALL.items()):
            write_unet(name, spec, args.out, args.seed + i)
    write_schedulers(args.out, args.seed)
    with open(os.path.join(args.out, "VERSIONS"), "w") as f:
        f.write(f"torch {torch.__version__}\ndiffusers {diffusers.__version__}\n")


if __name__ == "__main__":
    main()
