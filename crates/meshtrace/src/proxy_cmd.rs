//! `meshtrace proxy`: the tracing mesh proxy (being built).

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The proxy configuration (YAML).
    #[arg(long)]
    config: std::path::PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the proxy is not built yet ({})", args.config.display())
}
