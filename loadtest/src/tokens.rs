//! Tokens for the simulated users: minted locally with the server's HS256
//! secret, or obtained from a command (`--token-cmd`).

use roomcast::auth::Authenticator;
use tokio::sync::OnceCell;

pub enum Tokens {
    /// Mint with the HS256 secret (the server's `ROOMCAST_JWT_SECRET`).
    Secret(Box<Authenticator>),
    /// Run `sh -c CMD`; `{user}` in CMD is replaced by the user id (then it runs
    /// once per connection), otherwise it runs once and every connection shares
    /// that token (and so that user).
    Command {
        cmd: String,
        shared: OnceCell<String>,
    },
}

impl Tokens {
    pub fn new(secret: Option<&str>, token_cmd: Option<&str>) -> anyhow::Result<Tokens> {
        match (secret, token_cmd) {
            (_, Some(cmd)) => Ok(Tokens::Command {
                cmd: cmd.to_string(),
                shared: OnceCell::new(),
            }),
            (Some(s), None) => Ok(Tokens::Secret(Box::new(Authenticator::hs256(s.as_bytes())))),
            (None, None) => anyhow::bail!(
                "no way to get tokens: pass --secret (or set ROOMCAST_JWT_SECRET) to mint HS256 \
                 tokens, or --token-cmd"
            ),
        }
    }

    /// A token for `user`, valid for an hour.
    pub async fn get(&self, user: &str) -> anyhow::Result<String> {
        match self {
            Tokens::Secret(a) => a.mint(user, 3600),
            Tokens::Command { cmd, shared } => {
                if cmd.contains("{user}") {
                    run(&cmd.replace("{user}", user), user).await
                } else {
                    shared.get_or_try_init(|| run(cmd, user)).await.cloned()
                }
            }
        }
    }
}

async fn run(cmd: &str, user: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("ROOMCAST_LOAD_USER", user)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("--token-cmd: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "--token-cmd exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "--token-cmd printed no token");
    Ok(token)
}
