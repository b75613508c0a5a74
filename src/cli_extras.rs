//! The commands around the daemons: `wice import`, `wice completions`, `wice man`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use clap::CommandFactory as _;
use wice::cli::Cli;
use wice::import::import_wg_quick;

/// `wice import FILE [-o OUT]`: the TOML on stdout (or OUT, mode 0600), unmapped settings on
/// stderr.
pub(crate) fn import(file: &Path, output: Option<&Path>) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("wice0");
    let imported = import_wg_quick(name, &text).map_err(|e| format!("{}: {e}", file.display()))?;
    match output {
        Some(path) => {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            out.write_all(imported.toml.as_bytes())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        None => print!("{}", imported.toml),
    }
    let mut stderr = std::io::stderr().lock();
    for note in &imported.unmapped {
        let _ = writeln!(stderr, "wice import: not imported: {note}");
    }
    Ok(())
}

/// `wice completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "wice", &mut std::io::stdout());
}

/// `wice man [--dir DIR]`: wice(1) on stdout, or wice.1 and wice-COMMAND.1 in DIR.
pub(crate) fn man(dir: Option<&Path>) -> Result<(), String> {
    let command = Cli::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(|e| format!("writing stdout: {e}")),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .map_err(|e| format!("writing man pages to {}: {e}", dir.display()))
        }
    }
}
