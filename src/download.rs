//! The weights cache of `detect --model NAME`: the same folder and file names as mmengine uses
//! for a checkpoint URL, so that weights the Python stack already downloaded are reused and the
//! other way round.
//!
//! Mirrors `mmengine/runner/checkpoint.py: load_from_http` → `torch.hub.load_state_dict_from_url`:
//! the folder is `torch.hub.get_dir()/checkpoints` (`$TORCH_HOME/hub/checkpoints`, default
//! `$XDG_CACHE_HOME/torch/hub/checkpoints`, default `~/.cache/torch/hub/checkpoints`: torch/hub.py
//! `_get_torch_home`), the file name is the last segment of the URL's path. A missing file is
//! downloaded as `torch.hub.download_url_to_file` does: with a progress bar, into a temporary
//! file in the same folder that is renamed into place only when complete, and with torch.hub's
//! hash check (`HASH_REGEX = -([a-f0-9]*)\.`: the hex after a '-' in the file name must prefix
//! the file's sha256). It never writes a partial or unverified file under the final name.
//!
//! `MMCOMPAT_DOWNLOAD_MIRROR=http://host:port` fetches the same path from another server (a
//! mirror, or a local server in the tests); the cache file name stays the original URL's.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Environment variable replacing the scheme and host of every weights URL (the path is kept).
pub const MIRROR_ENV: &str = "MMCOMPAT_DOWNLOAD_MIRROR";

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "no folder for the weights cache: neither TORCH_HOME, XDG_CACHE_HOME nor HOME is set \
         (set TORCH_HOME: weights are kept in $TORCH_HOME/hub/checkpoints, as torch.hub does)"
    )]
    NoCacheDir,
    #[error("weights URL '{url}' has no file name (expected .../NAME-HASH.pth)")]
    NoFileName { url: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "downloading {url}: {why}. The weights are cached as {dest}: put the file there to run \
         offline, or pass --weights FILE"
    )]
    Http {
        url: String,
        dest: PathBuf,
        why: String,
    },
    #[error(
        "{url}: invalid hash value (expected \"{prefix}\", got \"{digest}\"): the file's sha256 \
         must start with the hex after the '-' in its name ({file}), as torch.hub checks. The \
         download is corrupt or not the published file; nothing was written to {dest}"
    )]
    HashMismatch {
        url: String,
        file: String,
        prefix: String,
        digest: String,
        dest: PathBuf,
    },
}

/// `torch.hub.get_dir()/checkpoints`.
pub fn hub_checkpoints_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let torch_home = var("TORCH_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|x| x.join("torch")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/torch")))?;
    Some(torch_home.join("hub").join("checkpoints"))
}

/// `os.path.basename(urlparse(url).path)`: the last path segment, without query or fragment.
pub fn file_name_of(url: &str) -> Option<&str> {
    let no_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = no_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split_once('/')
        .map_or("", |(_, p)| p);
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// `torch.hub.HASH_REGEX.search(filename).group(1)`: the hex digits between the first '-' that
/// is followed by hex digits and a '.'.
pub fn hash_prefix(file_name: &str) -> Option<&str> {
    file_name.match_indices('-').find_map(|(i, _)| {
        let rest = &file_name[i + 1..];
        let hex_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        (rest.as_bytes().get(hex_len) == Some(&b'.')).then(|| &rest[..hex_len])
    })
}

/// `url` with its scheme and host replaced by `$MMCOMPAT_DOWNLOAD_MIRROR`, when set.
fn mirrored(url: &str) -> String {
    match std::env::var(MIRROR_ENV) {
        Ok(m) if !m.is_empty() => {
            let no_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
            let path = no_scheme.find('/').map_or("", |i| &no_scheme[i..]);
            format!("{}{path}", m.trim_end_matches('/'))
        }
        _ => url.to_string(),
    }
}

/// The cached file for `url` (downloaded first when absent) in [`hub_checkpoints_dir`].
pub fn cached_weights(url: &str) -> Result<PathBuf, DownloadError> {
    let dir = hub_checkpoints_dir().ok_or(DownloadError::NoCacheDir)?;
    cached_weights_in(url, &dir)
}

/// [`cached_weights`] with an explicit cache folder.
pub fn cached_weights_in(url: &str, dir: &Path) -> Result<PathBuf, DownloadError> {
    let file = file_name_of(url).ok_or_else(|| DownloadError::NoFileName { url: url.into() })?;
    let dest = dir.join(file);
    if dest.is_file() {
        tracing::info!(path = %dest.display(), "weights from the torch.hub cache");
        return Ok(dest);
    }
    std::fs::create_dir_all(dir).map_err(|source| DownloadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let source_url = mirrored(url);
    eprintln!(
        "Downloading: \"{source_url}\" to {}",
        dest.display() // torch.hub's own line, so the two stacks read alike
    );
    download(&source_url, &dest, hash_prefix(file))?;
    Ok(dest)
}

fn download(url: &str, dest: &Path, prefix: Option<&str>) -> Result<(), DownloadError> {
    let http = |why: String| DownloadError::Http {
        url: url.to_string(),
        dest: dest.to_path_buf(),
        why,
    };
    let dir = dest.parent().unwrap_or(Path::new("."));
    let io = |source: std::io::Error| DownloadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let response = ureq::get(url).call().map_err(|e| http(e.to_string()))?;
    let body = response.into_body();
    let total = body.content_length();
    let mut reader = body.into_reader();
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(io)?;
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| http(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(io)?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    tmp.flush().map_err(io)?;
    let digest = format!("{:x}", hasher.finalize());
    if let Some(prefix) = prefix {
        if !digest.starts_with(prefix) {
            // The temporary file is removed when `tmp` drops.
            return Err(DownloadError::HashMismatch {
                url: url.to_string(),
                file: name,
                prefix: prefix.to_string(),
                digest,
                dest: dest.to_path_buf(),
            });
        }
    }
    tmp.persist(dest).map_err(|e| DownloadError::Io {
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    tracing::info!(path = %dest.display(), sha256 = %digest, "weights downloaded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_hash_prefixes_as_torch_hub() {
        let url = "https://download.openmmlab.com/mmyolo/v0/rtmdet/x/rtmdet_tiny_syncbn_fast_8xb32-300e_coco_20230102_140117-dbb1dc83.pth";
        let name = file_name_of(url).unwrap();
        assert_eq!(
            name,
            "rtmdet_tiny_syncbn_fast_8xb32-300e_coco_20230102_140117-dbb1dc83.pth"
        );
        // `-300e_` is not hex followed by '.', so the search goes on (re.search semantics).
        assert_eq!(hash_prefix(name), Some("dbb1dc83"));
        assert_eq!(
            file_name_of("https://h/a/pkd_x_20220925_181547-9cac5059.pth?versionId=CAEQ"),
            Some("pkd_x_20220925_181547-9cac5059.pth")
        );
        assert_eq!(hash_prefix("model.pth"), None);
        assert_eq!(hash_prefix("a-.pth"), Some(""));
        assert_eq!(file_name_of("https://host/"), None);
    }
}
