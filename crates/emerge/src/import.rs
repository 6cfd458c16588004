//! `emerge import`: a Hugging Face diffusers `UNet2DModel` checkpoint directory (the DDPM paper's
//! published networks, google/ddpm-*) becomes an emerge model. The config maps onto
//! [`UNetConfig`] field by field, any option emerge does not implement is refused by name, the
//! weights are matched key by key (missing, unknown and mis-shaped tensors are errors that name
//! the key), and `scheduler_config.json`, when present, gives the noise schedule.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::store::{
    ApplyResult, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use burn::tensor::Device;
use emerge_core::{BetaSchedule, ModelConfig, ScheduleConfig, UNet, UNetConfig, VarianceType};
use serde_json::{Map, Value};

/// The weight files diffusers writes, in the order they are looked for.
pub const WEIGHT_FILES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
];

/// diffusers' default when a config leaves `attention_head_dim` out (`UNet2DModel.__init__`).
const DIFFUSERS_DEFAULT_ATTENTION_HEAD_DIM: usize = 8;

/// What `import` read: the model, and notes on settings that only affect sampling.
pub struct Imported {
    pub config: ModelConfig,
    pub unet: UNet,
    pub weights_file: PathBuf,
    pub notes: Vec<String>,
}

/// Reads a checkpoint directory: `config.json`, a weight file, optionally `scheduler_config.json`.
pub fn import(dir: &Path, device: &Device) -> Result<Imported> {
    ensure!(
        dir.is_dir(),
        "'{}' is not a directory (expected a diffusers checkpoint directory)",
        dir.display()
    );
    let unet_json = read_json(&dir.join("config.json"))?;
    let unet_config = unet_config(&unet_json).context("config.json")?;
    let mut notes = Vec::new();
    let schedule = match dir.join("scheduler_config.json") {
        path if path.exists() => {
            schedule_config(&read_json(&path)?, &mut notes).context("scheduler_config.json")?
        }
        _ => {
            notes.push("no scheduler_config.json: using the DDPM paper's schedule (linear β 1e-4..0.02, T = 1000, fixed small variance, clipping)".into());
            ScheduleConfig::default()
        }
    };
    let config = ModelConfig {
        unet: unet_config,
        schedule,
        recommended: None,
    };
    config
        .validate()
        .context("the checkpoint's configuration")?;
    let weights_file = WEIGHT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.exists())
        .with_context(|| {
            format!(
                "no weights in '{}': expected {}",
                dir.display(),
                WEIGHT_FILES.join(" or ")
            )
        })?;
    let unet = load_weights(&weights_file, &config.unet, device)?;
    Ok(Imported {
        config,
        unet,
        weights_file,
        notes,
    })
}

fn read_json(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read '{}'", path.display()))?;
    match serde_json::from_str(&text)
        .with_context(|| format!("'{}' is not valid JSON", path.display()))?
    {
        Value::Object(map) => Ok(map),
        _ => bail!("'{}' is not a JSON object", path.display()),
    }
}

/// Typed access to a diffusers config, with errors that name the key.
struct Config<'a>(&'a Map<String, Value>);

impl Config<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let value = self
            .get(key)
            .with_context(|| format!("'{key}' is missing"))?;
        value
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("'{key}' must be a non-negative integer, got {value}"))
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        self.get(key).map_or(Ok(default), |v| {
            v.as_f64()
                .with_context(|| format!("'{key}' must be a number, got {v}"))
        })
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        self.get(key).map_or(Ok(default), |v| {
            v.as_bool()
                .with_context(|| format!("'{key}' must be true or false, got {v}"))
        })
    }

    fn str_or<'b>(&'b self, key: &str, default: &'b str) -> Result<&'b str> {
        self.get(key).map_or(Ok(default), |v| {
            v.as_str()
                .with_context(|| format!("'{key}' must be a string, got {v}"))
        })
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.list(key, "strings", |v| v.as_str().map(String::from))
    }

    fn usizes(&self, key: &str) -> Result<Vec<usize>> {
        self.list(key, "integers", |v| v.as_u64().map(|n| n as usize))
    }

    /// A list whose every item `item` reads; `what` names the items in the error.
    fn list<T>(&self, key: &str, what: &str, item: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
        let value = self
            .get(key)
            .with_context(|| format!("'{key}' is missing"))?;
        let list = value
            .as_array()
            .with_context(|| format!("'{key}' must be a list, got {value}"))?;
        list.iter()
            .map(|v| item(v).with_context(|| format!("'{key}' must list {what}, got {v}")))
            .collect()
    }

    /// Refuses a setting emerge does not implement unless it has the one supported value.
    fn require(&self, key: &str, supported: &Value, what: &str) -> Result<()> {
        // Numbers compare by value: a config written as `1` means the same as `1.0`.
        let same = |value: &Value| match (value.as_f64(), supported.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => value == supported,
        };
        match self.get(key) {
            Some(value) if !same(value) => bail!(
                "'{key}' = {value} is not supported: emerge implements {what} ({key} = {supported})"
            ),
            _ => Ok(()),
        }
    }
}

/// The `UNet2DModel` options emerge reads or checks; other keys must be null or false.
const UNET_KEYS: [&str; 29] = [
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "time_embedding_type",
    "time_embedding_dim",
    "freq_shift",
    "flip_sin_to_cos",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
    "class_embed_type",
    "num_class_embeds",
    "num_train_timesteps",
    "attention_legacy_order",
];

/// Maps a diffusers `UNet2DModel` config onto ours; refuses what emerge does not implement.
pub fn unet_config(json: &Map<String, Value>) -> Result<UNetConfig> {
    let c = Config(json);
    if let Some(class) = c.get("_class_name") {
        ensure!(
            class == "UNet2DModel",
            "'_class_name' = {class}: only diffusers' UNet2DModel can be imported"
        );
    }
    for (key, value) in json {
        let off = value.is_null() || value == &Value::Bool(false);
        ensure!(
            key.starts_with('_') || UNET_KEYS.contains(&key.as_str()) || off,
            "unknown option '{key}' = {value}: emerge cannot import it"
        );
    }
    c.require(
        "center_input_sample",
        &Value::Bool(false),
        "inputs in [−1, 1] as given",
    )?;
    c.require(
        "time_embedding_type",
        &"positional".into(),
        "the sinusoidal time embedding",
    )?;
    c.require("act_fn", &"silu".into(), "SiLU activations")?;
    c.require(
        "mid_block_type",
        &"UNetMidBlock2D".into(),
        "the DDPM middle block",
    )?;
    c.require("mid_block_scale_factor", &1.into(), "unscaled residuals")?;
    c.require(
        "downsample_type",
        &"conv".into(),
        "strided-convolution downsampling",
    )?;
    c.require(
        "upsample_type",
        &"conv".into(),
        "nearest-neighbour upsampling with a convolution",
    )?;
    c.require(
        "resnet_time_scale_shift",
        &"default".into(),
        "additive time conditioning",
    )?;
    c.require(
        "add_attention",
        &Value::Bool(true),
        "attention in the middle block",
    )?;
    c.require(
        "class_embed_type",
        &Value::Null,
        "a lookup-table class embedding",
    )?;

    let sample_size = match c.get("sample_size") {
        Some(Value::Array(hw)) if hw.len() == 2 && hw[0] == hw[1] => {
            hw[0].as_u64().context("'sample_size' must hold integers")? as usize
        }
        Some(Value::Array(hw)) => {
            bail!("'sample_size' = {hw:?}: emerge handles square images only")
        }
        _ => c.usize("sample_size")?,
    };
    let in_channels = c.usize("in_channels")?;
    let out_channels = c.usize("out_channels")?;
    ensure!(
        out_channels == in_channels,
        "'out_channels' = {out_channels} differs from 'in_channels' = {in_channels}: emerge samples ε-prediction models (no learned variance)"
    );
    let block_out_channels = c.usizes("block_out_channels")?;
    let levels = block_out_channels.len();
    let down = c.strings("down_block_types")?;
    let up = c.strings("up_block_types")?;
    ensure!(
        down.len() == levels,
        "'down_block_types' has {} entries for {levels} levels of 'block_out_channels'",
        down.len()
    );
    ensure!(
        up.len() == levels,
        "'up_block_types' has {} entries for {levels} levels of 'block_out_channels'",
        up.len()
    );
    let mut attention_resolutions = Vec::new();
    for (level, kind) in down.iter().enumerate() {
        let attention = match kind.as_str() {
            "DownBlock2D" => false,
            "AttnDownBlock2D" => true,
            other => bail!(
                "'down_block_types' entry {level} = \"{other}\": emerge implements DownBlock2D and AttnDownBlock2D"
            ),
        };
        let expected_up = if attention {
            "AttnUpBlock2D"
        } else {
            "UpBlock2D"
        };
        let mirrored = &up[levels - 1 - level];
        ensure!(
            mirrored == expected_up,
            "'up_block_types' entry {} = \"{mirrored}\" does not mirror down block {level} (\"{kind}\"): expected \"{expected_up}\"",
            levels - 1 - level
        );
        if attention {
            attention_resolutions.push(sample_size >> level);
        }
    }
    let time_embed_dim = 4 * block_out_channels
        .first()
        .copied()
        .context("'block_out_channels' is empty")?;
    if let Some(dim) = c.get("time_embedding_dim") {
        ensure!(
            dim.as_u64() == Some(time_embed_dim as u64),
            "'time_embedding_dim' = {dim}: emerge uses 4 × block_out_channels[0] = {time_embed_dim}"
        );
    }
    let norm_num_groups = c.usize("norm_num_groups")?;
    if let Some(groups) = c.get("attn_norm_num_groups") {
        ensure!(
            groups.as_u64() == Some(norm_num_groups as u64),
            "'attn_norm_num_groups' = {groups}: emerge normalises attention with norm_num_groups = {norm_num_groups}"
        );
    }
    let attention_head_dim = match json.get("attention_head_dim") {
        None => Some(DIFFUSERS_DEFAULT_ATTENTION_HEAD_DIM),
        Some(Value::Null) => None,
        Some(_) => Some(c.usize("attention_head_dim")?),
    };
    let num_class_embeds = c
        .get("num_class_embeds")
        .map(|_| c.usize("num_class_embeds"))
        .transpose()?;
    let downsample_padding = c
        .get("downsample_padding")
        .map_or(Ok(1), |_| c.usize("downsample_padding"))?;
    let config = UNetConfig {
        in_channels,
        out_channels,
        sample_size,
        block_out_channels,
        layers_per_block: c.usize("layers_per_block")?,
        attention_resolutions,
        norm_num_groups,
        norm_eps: c.f64_or("norm_eps", 1e-5)?,
        dropout: c.f64_or("dropout", 0.0)?,
        attention_head_dim,
        flip_sin_to_cos: c.bool_or("flip_sin_to_cos", true)?,
        freq_shift: c.f64_or("freq_shift", 0.0)?,
        downsample_padding,
        num_class_embeds,
    };
    config.validate()?;
    Ok(config)
}

/// Maps a diffusers scheduler config (DDPMScheduler, DDIMScheduler, …) onto the noise schedule.
/// Settings that define the model's training process must match what emerge implements; settings
/// that only change how sampling steps are spaced are noted.
pub fn schedule_config(
    json: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<ScheduleConfig> {
    let c = Config(json);
    ensure!(
        c.get("trained_betas").is_none(),
        "'trained_betas' is set: emerge builds β from 'beta_schedule'"
    );
    c.require("prediction_type", &"epsilon".into(), "ε-prediction")?;
    c.require(
        "thresholding",
        &Value::Bool(false),
        "clipping of x̂_0, not dynamic thresholding",
    )?;
    c.require(
        "rescale_betas_zero_snr",
        &Value::Bool(false),
        "the schedule as given",
    )?;
    c.require("clip_sample_range", &1.0.into(), "clipping to [−1, 1]")?;
    let beta_schedule = match c.str_or("beta_schedule", "linear")? {
        "linear" => BetaSchedule::Linear {
            beta_start: c.f64_or("beta_start", 1e-4)?,
            beta_end: c.f64_or("beta_end", 0.02)?,
        },
        "squaredcos_cap_v2" => BetaSchedule::Cosine { s: 0.008 },
        other => bail!(
            "'beta_schedule' = \"{other}\" is not supported: emerge implements \"linear\" and \"squaredcos_cap_v2\""
        ),
    };
    let variance_type = match c.str_or("variance_type", "fixed_small")? {
        "fixed_small" => VarianceType::FixedSmall,
        "fixed_large" => VarianceType::FixedLarge,
        other => bail!(
            "'variance_type' = \"{other}\" is not supported: emerge implements \"fixed_small\" and \"fixed_large\""
        ),
    };
    let spacing = c.str_or("timestep_spacing", "leading")?;
    if spacing != "leading" {
        notes.push(format!("'timestep_spacing' = \"{spacing}\" only affects sampling: emerge spaces its steps \"leading\""));
    }
    if c.get("steps_offset").is_some_and(|v| v.as_u64() != Some(0)) {
        notes.push("'steps_offset' only affects sampling: emerge uses 0".into());
    }
    Ok(ScheduleConfig {
        num_train_timesteps: c
            .get("num_train_timesteps")
            .map_or(Ok(1000), |_| c.usize("num_train_timesteps"))?,
        beta_schedule,
        variance_type,
        clip_sample: c.bool_or("clip_sample", true)?,
    })
}

/// Loads the weights key by key: PyTorch layout (Linear transposed, GroupNorm weight/bias →
/// gamma/beta), old attention names (query/key/value/proj_attn, as in google/ddpm-*) mapped to
/// today's (to_q/to_k/to_v/to_out.0). Every missing, unknown or mis-shaped tensor is reported.
pub fn load_weights(path: &Path, config: &UNetConfig, device: &Device) -> Result<UNet> {
    let mut unet = UNet::new(config, device)?;
    let old_attention_names = KeyRemapper::from_patterns(vec![
        (r"\.query\.", ".to_q."),
        (r"\.key\.", ".to_k."),
        (r"\.value\.", ".to_v."),
        (r"\.proj_attn\.", ".to_out.0."),
    ])
    .expect("valid patterns");
    let result = if path.extension().is_some_and(|e| e == "safetensors") {
        let store = SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
        apply(
            &mut unet,
            store
                .remap(old_attention_names)
                .allow_partial(true)
                .validate(false),
        )
    } else {
        // PyTorch pickles always go through PyTorchToBurnAdapter.
        apply(
            &mut unet,
            PytorchStore::from_file(path)
                .remap(old_attention_names)
                .allow_partial(true)
                .validate(false),
        )
    }
    .with_context(|| format!("cannot read the weights in '{}'", path.display()))?;
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(key, _)| format!("missing tensor '{key}'")),
    );
    problems.extend(
        result
            .unused
            .iter()
            .map(|key| format!("unknown tensor '{key}'")),
    );
    if !problems.is_empty() {
        bail!(
            "the weights in '{}' do not fit the network its config.json describes ({} problems):\n  {}",
            path.display(),
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(unet)
}

fn apply(unet: &mut UNet, mut store: impl ModuleStore) -> Result<ApplyResult> {
    unet.load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
}
