//! Weight files: one burnpack container holding the UNet's tensors in f16, the [`ModelConfig`]
//! as JSON metadata, and a CRC-32 of the tensor data, so that a file is self-describing and a
//! truncated or corrupted one is refused with a message instead of producing garbage images.

use std::path::Path;

use burn::store::burn_pack::{Reader, Writer};
use burn::store::{BurnpackStore, FloatCastAdapter, ModuleSnapshot};
use burn::tensor::{Bytes, DType, Device};

use crate::error::EmergeError;
use crate::model::ModelConfig;
use crate::unet::UNet;

/// Metadata key of the model configuration (JSON).
const CONFIG_KEY: &str = "emerge.config";
/// Metadata key of the CRC-32 over every tensor's name and bytes, in name order.
const CHECKSUM_KEY: &str = "emerge.crc32";
/// The file extension of model files.
pub const EXTENSION: &str = "bpk";

fn bad(message: impl std::fmt::Display) -> EmergeError {
    EmergeError::BadWeights(message.to_string())
}

/// CRC-32 over the tensors' names and raw bytes.
fn checksum(tensors: &[burn::store::burn_pack::Tensor]) -> Result<u32, EmergeError> {
    let mut hasher = crc32fast::Hasher::new();
    for tensor in tensors {
        hasher.update(tensor.name.as_bytes());
        hasher.update(
            &tensor
                .to_bytes()
                .map_err(|e| bad(format!("tensor '{}': {e}", tensor.name)))?,
        );
    }
    Ok(hasher.finalize())
}

/// How weights are stored on disk (they are always f32 once loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f16: half the size; what the page loads.
    Half,
    /// f32: exact; what training checkpoints use.
    Full,
}

/// Serialises the weights and the config into the bytes of a model file.
pub fn to_bytes(
    unet: &UNet,
    config: &ModelConfig,
    precision: Precision,
) -> Result<Vec<u8>, EmergeError> {
    let config_json =
        serde_json::to_string(config).map_err(|e| EmergeError::InvalidConfig(e.to_string()))?;
    let dtype = match precision {
        Precision::Half => DType::F16,
        Precision::Full => DType::F32,
    };
    let mut store = BurnpackStore::from_bytes(None).with_to_adapter(FloatCastAdapter::to(dtype));
    unet.save_into(&mut store)
        .map_err(|e| bad(format!("cannot serialise the weights: {e}")))?;
    let packed = store.get_bytes().map_err(bad)?;
    // Re-pack with the checksum of exactly the bytes that were written.
    let reader = Reader::from_bytes(packed).map_err(bad)?;
    let metadata = reader.metadata().clone();
    let tensors = reader.into_tensors().map_err(bad)?;
    let crc = checksum(&tensors)?;
    let mut writer = Writer::new(tensors)
        .with_metadata(CONFIG_KEY, &config_json)
        .with_metadata(CHECKSUM_KEY, &format!("{crc:08x}"));
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    Ok(writer.into_bytes().map_err(bad)?.to_vec())
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

/// Loads a model file from memory (the browser path): checks its integrity, builds the UNet its
/// config describes on `device`, and fills it with the stored weights (cast to f32).
pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<(ModelConfig, UNet), EmergeError> {
    let bytes = Bytes::from_bytes_vec(bytes);
    let reader = Reader::from_bytes(bytes.clone())
        .map_err(|e| bad(format!("not a readable model file ({e}); is it truncated?")))?;
    let config = config_of(&reader)?;
    let expected = reader
        .metadata()
        .get(CHECKSUM_KEY)
        .cloned()
        .ok_or_else(|| bad(format!("the file has no '{CHECKSUM_KEY}' entry")))?;
    let tensors = reader
        .into_tensors()
        .map_err(|e| bad(format!("{e}; is the file truncated?")))?;
    let actual = format!("{:08x}", checksum(&tensors)?);
    if actual != expected {
        return Err(bad(format!(
            "checksum mismatch (stored {expected}, computed {actual}): the file is corrupted"
        )));
    }
    let mut unet = UNet::new(&config.unet, device)?;
    let mut store =
        BurnpackStore::from_bytes(Some(bytes)).with_from_adapter(FloatCastAdapter::to(DType::F32));
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
