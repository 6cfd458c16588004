//! Weight files: one burnpack container holding the UNet's tensors (f32, f16, or quantized to
//! int8 or 4-bit codes: [`quantize`]), the [`ModelConfig`] as JSON metadata, and CRC-32s of the
//! stored data (all of it, and each tensor's), so that a file is self-describing and a truncated
//! or corrupted one is refused with a message that names what is wrong instead of producing
//! garbage images. Whatever the storage, loading yields the same f32 network.

pub mod parameters;
pub mod quantize;

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::burn_pack::{Reader, Tensor as Stored, Writer};
use burn::store::{BurnpackStore, FloatCastAdapter, ModuleSnapshot};
use burn::tensor::{Bytes, DType, Device, f16};
use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::model::ModelConfig;
use crate::unet::{UNet, UNetConfig};
use quantize::{Codes, Q4_BLOCK, Scheme};

/// Metadata key of the model configuration (JSON).
const CONFIG_KEY: &str = "emerge.config";
/// Metadata key of the CRC-32 over every tensor's name and bytes, in name order.
const CHECKSUM_KEY: &str = "emerge.crc32";
/// Metadata key of each stored tensor's CRC-32 (JSON: name → hex), to name a corrupted one.
const TENSOR_CHECKSUMS_KEY: &str = "emerge.crc32.tensors";
/// Metadata key of the quantized tensors (JSON [`QuantizedTensors`]).
const QUANTIZED_KEY: &str = "emerge.quantized";
/// The stored tensor holding the scales of quantized tensor `name` is `name` + this.
const SCALE_SUFFIX: &str = "#scale";
/// The file extension of model files.
pub const EXTENSION: &str = "bpk";

fn bad(message: impl std::fmt::Display) -> EmergeError {
    EmergeError::BadWeights(message.to_string())
}

fn crc32(name: &str, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(name.as_bytes());
    hasher.update(bytes);
    hasher.finalize()
}

/// CRC-32 over the tensors' names and raw bytes, and each tensor's own.
fn checksums(tensors: &[Stored]) -> Result<(u32, BTreeMap<String, String>), EmergeError> {
    let mut hasher = crc32fast::Hasher::new();
    let mut each = BTreeMap::new();
    for tensor in tensors {
        let bytes = tensor
            .to_bytes()
            .map_err(|e| bad(format!("tensor '{}': {e}", tensor.name)))?;
        hasher.update(tensor.name.as_bytes());
        hasher.update(&bytes);
        each.insert(
            tensor.name.clone(),
            format!("{:08x}", crc32(&tensor.name, &bytes)),
        );
    }
    Ok((hasher.finalize(), each))
}

/// How weights are stored on disk (they are always f32 once loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32: exact; what training checkpoints use.
    F32,
    /// f16: half the size.
    F16,
    /// Matrices and kernels as 8-bit codes with a scale per output channel, the rest f16.
    Int8,
    /// Matrices and kernels as 4-bit codes with an f16 scale per block of 32, the rest f16.
    Q4,
}

impl Precision {
    /// The names the CLI and the manifest use.
    pub const NAMES: [&'static str; 4] = ["f32", "f16", "int8", "q4"];

    fn scheme(self) -> Option<Scheme> {
        match self {
            Self::F32 | Self::F16 => None,
            Self::Int8 => Some(Scheme::Int8),
            Self::Q4 => Some(Scheme::Q4),
        }
    }

    /// The dtype of the tensors that are not quantized.
    fn float_dtype(self) -> DType {
        if self == Self::F32 {
            DType::F32
        } else {
            DType::F16
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = EmergeError;

    fn from_str(name: &str) -> Result<Self, EmergeError> {
        [Self::F32, Self::F16, Self::Int8, Self::Q4]
            .into_iter()
            .find(|p| p.to_string() == name)
            .ok_or_else(|| {
                EmergeError::InvalidArgument(format!(
                    "unknown precision '{name}' (known: {})",
                    Self::NAMES.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

/// Which stored tensors are codes, in which scheme, and their shapes (the metadata that makes a
/// quantized file self-describing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QuantizedTensors {
    scheme: Scheme,
    /// Values per block (q4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    block: Option<usize>,
    tensors: BTreeMap<String, Vec<usize>>,
}

/// The values of a float tensor as f32.
fn float_values(tensor: &Stored) -> Result<Vec<f32>, EmergeError> {
    let bytes = tensor
        .to_bytes()
        .map_err(|e| bad(format!("tensor '{}': {e}", tensor.name)))?;
    match tensor.dtype {
        DType::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        DType::F16 => Ok(bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()),
        other => Err(bad(format!(
            "tensor '{}' holds {other:?} values, not f32 or f16",
            tensor.name
        ))),
    }
}

/// A stored tensor of `values` in `dtype` (f32 or f16). `param_id` is the parameter's identity,
/// which a training checkpoint keeps so that the optimiser's state finds its parameters again.
fn float_tensor(
    name: String,
    shape: Vec<usize>,
    param_id: Option<u64>,
    values: &[f32],
    dtype: DType,
) -> Stored {
    let bytes: Vec<u8> = if dtype == DType::F16 {
        values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    Stored::new(name, dtype, shape, param_id, Bytes::from_bytes_vec(bytes))
}

/// The bytes of a model file holding `tensors` (float, any shape) at `precision`, with `config`
/// and `metadata` (burnpack's own keys; emerge's are written here).
fn encode(
    tensors: Vec<Stored>,
    metadata: &BTreeMap<String, String>,
    config: &ModelConfig,
    precision: Precision,
) -> Result<Vec<u8>, EmergeError> {
    let config_json =
        serde_json::to_string(config).map_err(|e| EmergeError::InvalidConfig(e.to_string()))?;
    let mut stored = Vec::with_capacity(tensors.len());
    let mut quantized = BTreeMap::new();
    for tensor in tensors {
        let values = float_values(&tensor)?;
        let shape = tensor.shape.to_vec();
        match precision.scheme() {
            Some(scheme) if scheme.applies_to(&shape) => {
                let Codes { codes, scales } = scheme.encode(&values, &shape);
                let scale_dtype = if scheme.half_scales() {
                    DType::F16
                } else {
                    DType::F32
                };
                let scale_name = format!("{}{SCALE_SUFFIX}", tensor.name);
                stored.push(float_tensor(
                    scale_name,
                    vec![scales.len()],
                    None,
                    &scales,
                    scale_dtype,
                ));
                stored.push(Stored::new(
                    tensor.name.clone(),
                    DType::U8,
                    vec![codes.len()],
                    tensor.param_id,
                    Bytes::from_bytes_vec(codes),
                ));
                quantized.insert(tensor.name, shape);
            }
            _ => stored.push(float_tensor(
                tensor.name,
                shape,
                tensor.param_id,
                &values,
                precision.float_dtype(),
            )),
        }
    }
    stored.sort_by(|a, b| a.name.cmp(&b.name));
    let (crc, each) = checksums(&stored)?;
    let mut writer = Writer::new(stored)
        .with_metadata(CONFIG_KEY, &config_json)
        .with_metadata(CHECKSUM_KEY, &format!("{crc:08x}"))
        .with_metadata(
            TENSOR_CHECKSUMS_KEY,
            &serde_json::to_string(&each).map_err(bad)?,
        );
    if let Some(scheme) = precision.scheme() {
        let described = QuantizedTensors {
            scheme,
            block: (scheme == Scheme::Q4).then_some(Q4_BLOCK),
            tensors: quantized,
        };
        writer = writer.with_metadata(
            QUANTIZED_KEY,
            &serde_json::to_string(&described).map_err(bad)?,
        );
    }
    for (key, value) in metadata.iter().filter(|(k, _)| !k.starts_with("emerge.")) {
        writer = writer.with_metadata(key, value);
    }
    Ok(writer.into_bytes().map_err(bad)?.to_vec())
}

/// Serialises the weights and the config into the bytes of a model file.
pub fn to_bytes(
    unet: &UNet,
    config: &ModelConfig,
    precision: Precision,
) -> Result<Vec<u8>, EmergeError> {
    let mut store = BurnpackStore::from_bytes(None);
    unet.save_into(&mut store)
        .map_err(|e| bad(format!("cannot serialise the weights: {e}")))?;
    let reader = Reader::from_bytes(store.get_bytes().map_err(bad)?).map_err(bad)?;
    let metadata = reader.metadata().clone();
    encode(
        reader.into_tensors().map_err(bad)?,
        &metadata,
        config,
        precision,
    )
}

/// The bytes of model file `bytes` stored at `precision` instead (the same configuration; from
/// a quantized file, the values its codes decode to).
pub fn repack(bytes: Vec<u8>, precision: Precision) -> Result<Vec<u8>, EmergeError> {
    let decoded = decode(bytes)?;
    encode(
        decoded.tensors,
        &decoded.metadata,
        &decoded.config,
        precision,
    )
}

/// Writes a model file atomically: to a temporary file beside `path`, then renamed over it, so
/// an interrupted save never leaves a file that fails to load.
pub fn save(
    path: &Path,
    unet: &UNet,
    config: &ModelConfig,
    precision: Precision,
) -> Result<(), EmergeError> {
    crate::atomic_file::write_atomically(path, &to_bytes(unet, config, precision)?)
}

/// The bytes of model file `bytes` with its configuration replaced by `config` (for a new
/// recommended request): the stored tensors are kept bit for bit, and so their checksum; the
/// network and schedule may not change.
pub fn with_config(bytes: Vec<u8>, config: &ModelConfig) -> Result<Vec<u8>, EmergeError> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| bad(format!("not a readable model file ({e}); is it truncated?")))?;
    let stored = config_of(&reader)?;
    if (stored.unet, stored.schedule) != (config.unet.clone(), config.schedule) {
        return Err(EmergeError::InvalidConfig(
            "a new configuration may change the recommendation only, not the network or schedule"
                .into(),
        ));
    }
    config.validate()?;
    let config_json =
        serde_json::to_string(config).map_err(|e| EmergeError::InvalidConfig(e.to_string()))?;
    let metadata = reader.metadata().clone();
    let tensors = reader
        .into_tensors()
        .map_err(|e| bad(format!("{e}; is the file truncated?")))?;
    let mut writer = Writer::new(tensors);
    for (key, value) in &metadata {
        let value = if key == CONFIG_KEY {
            &config_json
        } else {
            value
        };
        writer = writer.with_metadata(key, value);
    }
    Ok(writer.into_bytes().map_err(bad)?.to_vec())
}

/// Reads only the configuration of a model file (cheap: no tensor is touched).
pub fn read_config(bytes: &[u8]) -> Result<ModelConfig, EmergeError> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| bad(format!("not a readable model file ({e}); is it truncated?")))?;
    config_of(&reader)
}

fn config_of(reader: &Reader) -> Result<ModelConfig, EmergeError> {
    let json = reader.metadata().get(CONFIG_KEY).ok_or_else(|| {
        bad(format!(
            "the file has no '{CONFIG_KEY}' entry: it was not written by emerge"
        ))
    })?;
    let config: ModelConfig = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "the model configuration in the file is invalid: {e}"
        ))
    })?;
    config.validate()?;
    Ok(config)
}

/// The tensors' checksums against the stored ones: a mismatch names the tensors whose bytes
/// changed where the file lists each tensor's checksum (files written before it did not).
fn verify(metadata: &BTreeMap<String, String>, tensors: &[Stored]) -> Result<(), EmergeError> {
    let expected = metadata
        .get(CHECKSUM_KEY)
        .ok_or_else(|| bad(format!("the file has no '{CHECKSUM_KEY}' entry")))?;
    let (crc, each) = checksums(tensors)?;
    let actual = format!("{crc:08x}");
    if &actual == expected {
        return Ok(());
    }
    let listed: BTreeMap<String, String> = metadata
        .get(TENSOR_CHECKSUMS_KEY)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let changed: Vec<&str> = each
        .iter()
        .filter(|(name, crc)| listed.get(*name).is_some_and(|stored| stored != *crc))
        .map(|(name, _)| name.as_str())
        .collect();
    let which = if changed.is_empty() {
        String::new()
    } else {
        format!(" in tensor {}", changed.join(", "))
    };
    Err(bad(format!(
        "checksum mismatch{which} (stored {expected}, computed {actual}): the file is corrupted"
    )))
}

/// What a model file holds, its integrity checked and its quantized tensors decoded.
struct Decoded {
    config: ModelConfig,
    /// burnpack's and emerge's metadata as stored.
    metadata: BTreeMap<String, String>,
    /// Every weight as f32 or f16, under its parameter name.
    tensors: Vec<Stored>,
}

/// Reads model file `bytes`: checks its integrity and decodes its quantized tensors to f32.
fn decode(bytes: Vec<u8>) -> Result<Decoded, EmergeError> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| bad(format!("not a readable model file ({e}); is it truncated?")))?;
    let config = config_of(&reader)?;
    let metadata = reader.metadata().clone();
    let quantized: Option<QuantizedTensors> = metadata
        .get(QUANTIZED_KEY)
        .map(|json| serde_json::from_str(json))
        .transpose()
        .map_err(|e| {
            bad(format!(
                "the file's list of quantized tensors is invalid: {e}"
            ))
        })?;
    let tensors = reader
        .into_tensors()
        .map_err(|e| bad(format!("{e}; is the file truncated?")))?;
    verify(&metadata, &tensors)?;
    let Some(quantized) = quantized else {
        return Ok(Decoded {
            config,
            metadata,
            tensors,
        });
    };
    if quantized.scheme == Scheme::Q4 && quantized.block != Some(Q4_BLOCK) {
        return Err(bad(format!(
            "4-bit blocks of {:?} values are not supported (this build reads blocks of {Q4_BLOCK})",
            quantized.block
        )));
    }
    let mut by_name: BTreeMap<String, Stored> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    for (name, shape) in &quantized.tensors {
        let codes = by_name.remove(name);
        let scales = by_name.remove(&format!("{name}{SCALE_SUFFIX}"));
        let (Some(codes), Some(scales)) = (codes, scales) else {
            return Err(bad(format!(
                "the file lists quantized tensor '{name}' but lacks its codes or scales"
            )));
        };
        let stored = Codes {
            codes: codes.to_bytes().map_err(bad)?.to_vec(),
            scales: float_values(&scales)?,
        };
        let values = quantized
            .scheme
            .decode(&stored, shape)
            .map_err(|e| bad(format!("quantized tensor '{name}' {e}")))?;
        by_name.insert(
            name.clone(),
            float_tensor(
                name.clone(),
                shape.clone(),
                codes.param_id,
                &values,
                DType::F32,
            ),
        );
    }
    Ok(Decoded {
        config,
        metadata,
        tensors: by_name.into_values().collect(),
    })
}

/// Loads a model file from memory (the browser path): checks its integrity, builds the UNet its
/// config describes on `device`, and fills it with the stored weights (as f32).
pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<(ModelConfig, UNet), EmergeError> {
    let Decoded {
        config, tensors, ..
    } = decode(bytes)?;
    let floats = Writer::new(tensors).into_bytes().map_err(bad)?;
    let mut unet = UNet::new(&config.unet, device)?;
    let mut store =
        BurnpackStore::from_bytes(Some(floats)).with_from_adapter(FloatCastAdapter::to(DType::F32));
    let result = unet.load_from(&mut store).map_err(|e| {
        bad(format!(
            "the weights do not fit the configured network: {e}"
        ))
    })?;
    if !result.unused.is_empty() {
        return Err(bad(format!(
            "the file holds tensors the network does not have: {:?}",
            result.unused
        )));
    }
    Ok((config, unet))
}

/// The weights of `unet` in a UNet of `config` built on `device` (another backend, or with
/// autodiff: its parameters then train), through a burnpack in memory.
pub fn copied_to(unet: &UNet, config: &UNetConfig, device: &Device) -> Result<UNet, EmergeError> {
    let mut written = BurnpackStore::from_bytes(None);
    unet.save_into(&mut written)
        .map_err(|e| bad(format!("cannot serialise the weights: {e}")))?;
    let mut read = BurnpackStore::from_bytes(Some(written.get_bytes().map_err(bad)?));
    let mut copy = UNet::new(config, device)?;
    copy.load_from(&mut read)
        .map_err(|e| bad(format!("cannot copy the weights: {e}")))?;
    Ok(copy)
}

/// Loads a model file from a path (native).
pub fn load(path: &Path, device: &Device) -> Result<(ModelConfig, UNet), EmergeError> {
    let bytes = std::fs::read(path).map_err(|source| EmergeError::Io {
        context: format!("cannot read model file '{}'", path.display()),
        source,
    })?;
    from_bytes(bytes, device).map_err(|e| match e {
        EmergeError::BadWeights(msg) => bad(format!("'{}': {msg}", path.display())),
        other => other,
    })
}

#[cfg(test)]
mod tests;
