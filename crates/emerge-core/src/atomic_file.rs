//! Files that are either fully written or not there: model files, checkpoints, manifests and
//! images are written to a temporary file beside their path, synced, then renamed over it, so
//! an interrupted write never leaves a file that fails to load.

use std::path::Path;

use crate::error::EmergeError;

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EmergeError> {
    let io = |context: String| move |source| EmergeError::Io { context, source };
    let file_name = path.file_name().ok_or_else(|| {
        EmergeError::InvalidArgument(format!("'{}' is not a file path", path.display()))
    })?;
    let tmp = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)
            .map_err(io(format!("cannot create '{}'", tmp.display())))?;
        file.write_all(bytes)
            .map_err(io(format!("cannot write '{}'", tmp.display())))?;
        file.sync_all()
            .map_err(io(format!("cannot sync '{}'", tmp.display())))?;
    }
    std::fs::rename(&tmp, path).map_err(io(format!(
        "cannot move '{}' to '{}'",
        tmp.display(),
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("emerge-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file.bin");
        write_atomically(&path, b"a longer first version").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.bin"]);
        let err = write_atomically(&dir.join("missing/file.bin"), b"x").unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
