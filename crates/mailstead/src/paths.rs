//! Where things are: the data directory, the configuration file in it, and the run files a
//! running server leaves there (its pid, its lock, the addresses it listens on).

use anyhow::{Context, Result, bail};
use mailstead_core::config::{Config, Loaded};
use std::path::{Path, PathBuf};

/// The data directory when neither `--data-dir` nor `DATA_DIR` says.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/mailstead";
pub const CONFIG_FILE: &str = "mailstead.conf";

/// Where a command looks.
#[derive(Clone, Debug)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub config: PathBuf,
}

impl Paths {
    pub fn new(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Paths {
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let config = config.unwrap_or_else(|| data_dir.join(CONFIG_FILE));
        Paths { data_dir, config }
    }

    /// Loads the configuration, with the environment overriding the file.
    pub fn load_config(&self) -> Result<Loaded> {
        if !self.config.exists() {
            bail!(
                "no configuration at {}; create one with `mailstead init --data-dir {}`",
                self.config.display(),
                self.data_dir.display()
            );
        }
        let env = |k: &str| std::env::var(k).ok();
        Config::load(&self.config, &self.data_dir, &env)
            .map_err(|e| anyhow::anyhow!("the configuration has errors:\n{e}"))
    }
}

/// Files a running server keeps in `DATA_DIR/run`.
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn new(config: &Config) -> RunFiles {
        RunFiles {
            dir: config.data_dir.join("run"),
        }
    }

    pub fn pid(&self) -> PathBuf {
        self.dir.join("mailstead.pid")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// JSON list of the listeners and the addresses they got (port 0 becomes a real port).
    pub fn listeners(&self) -> PathBuf {
        self.dir.join("listeners.json")
    }

    /// The pid of a server running on this data directory, if any.
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The lock is held for as long as the server runs; a stale pid file has no holder.
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .open(self.lock())
            .ok()?;
        match lock.try_lock() {
            Ok(()) => None,
            Err(_) => Some(pid),
        }
    }
}

/// Writes a file atomically: temp file, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a file path without a directory")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
