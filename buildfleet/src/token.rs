//! `buildfleet token new`: a token for the servers' token file. The token
//! goes to a file only its owner can read, never to the terminal (where
//! scrollback and CI logs keep it); stdout gets the entry to append.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

use crate::cli::TokenNewArgs;

pub fn new(args: TokenNewArgs) -> Result<i32> {
    if args.name.is_empty() || args.name.contains(char::is_whitespace) {
        eprintln!("error: --name must be non-empty, without spaces");
        return Ok(crate::exit::USAGE);
    }
    let token = buildfleet_trust::new_token().context("reading the OS's random source")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.token_out)
        .with_context(|| {
            format!(
                "creating {} (it must not exist yet)",
                args.token_out.display()
            )
        })?;
    writeln!(file, "{token}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.token_out.display()))?;
    print!("{}", entry(&args, &token));
    eprintln!(
        "token for `{}` ({}) written to {}; append the lines above to the servers' token file (under `tokens:`)",
        args.name,
        args.role,
        args.token_out.display()
    );
    Ok(crate::exit::GREEN)
}

/// The token file's entry for `token`: its hash, never the token.
fn entry(args: &TokenNewArgs, token: &str) -> String {
    let mut out = format!(
        "  - name: {}\n    role: {}\n    hash: {}\n",
        args.name,
        args.role,
        buildfleet_trust::stored_hash(token)
    );
    if args.cache_write {
        out += "    cache_write: true\n";
    }
    out
}
