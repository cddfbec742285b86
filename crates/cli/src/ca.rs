//! `switchyard ca`: a private certificate authority for the operator who has none. `init`
//! makes the CA (`ca.pem`, `ca.key`); `issue` signs a certificate and key for a gateway's
//! listener or for an agent (`NAME.pem`, `NAME.key`), usable as a server and as a client
//! certificate. Keys are written readable by their owner only, and nothing is overwritten
//! unless asked.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::CliError;

#[derive(Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Make a new CA in --dir: ca.pem (give it to whoever must trust it) and ca.key (keep it
    /// offline).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Switchyard private CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate signed by the CA in --dir: NAME.pem (with the CA after it) and
    /// NAME.key.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// The common name and file name; for an agent, the worker's name in the fleet. Also
        /// a DNS name of the certificate when it is a valid one.
        #[arg(long)]
        name: String,
        /// Another DNS name the certificate is valid for (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// An IP address the certificate is valid for (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// For an agent's TLS sidecar: the worker it serves, by its name in the fleet (a
        /// gateway with `[upstream] tls_worker_ca` accepts no other certificate for it). Valid
        /// for serving only: it opens no port as a client.
        #[arg(long, value_name = "NAME")]
        worker: Option<String>,
        /// For a gateway: the client certificate it shows to agents' sidecars (they accept
        /// no other client). Valid as a client only.
        #[arg(long, conflicts_with = "worker")]
        gateway: bool,
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Where to write NAME.pem and NAME.key [default: --dir].
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(args: CaArgs) -> Result<(), CliError> {
    match args.command {
        CaCommand::Init {
            dir,
            name,
            days,
            force,
        } => init(&dir, &name, days, force),
        CaCommand::Issue {
            dir,
            name,
            dns,
            ips,
            worker,
            gateway,
            days,
            out,
            force,
        } => {
            let role = match (worker, gateway) {
                (Some(worker), _) => Role::Worker(worker),
                (None, true) => Role::Gateway,
                (None, false) => Role::Plain,
            };
            let names = Names {
                dns: &dns,
                ips: &ips,
                role,
            };
            issue(&dir, &name, &names, days, out.as_deref(), force)
        }
    }
}

/// What a certificate names besides its common name.
struct Names<'a> {
    dns: &'a [String],
    ips: &'a [IpAddr],
    role: Role,
}

/// Whom a certificate speaks for in the fleet, as a URI subject alternative name.
enum Role {
    Plain,
    Worker(String),
    Gateway,
}

impl Role {
    fn uri(&self) -> Option<String> {
        match self {
            Role::Plain => None,
            Role::Worker(name) => Some(format!(
                "{}{name}",
                switchyard_fleet::hop::WORKER_URI_PREFIX
            )),
            Role::Gateway => Some(switchyard_fleet::hop::GATEWAY_URI.to_string()),
        }
    }
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CliError> {
    if days == 0 || days > 36_500 {
        return Err(CliError::Usage("--days must be between 1 and 36500".into()));
    }
    let now = time::OffsetDateTime::now_utc();
    // A little in the past: a peer whose clock is a few minutes behind still accepts it.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
    Ok(())
}

fn init(dir: &Path, name: &str, days: u32, force: bool) -> Result<(), CliError> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    refuse_overwrite(&[&cert_path, &key_path], force)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, days)?;
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    write_file(&cert_path, &cert.pem(), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    println!("CA certificate: {}", cert_path.display());
    println!(
        "CA key:         {} (owner-only; keep it off the gateways)",
        key_path.display()
    );
    Ok(())
}

fn issue(
    dir: &Path,
    name: &str,
    names: &Names<'_>,
    days: u32,
    out: Option<&Path>,
    force: bool,
) -> Result<(), CliError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CliError::Usage(format!(
            "--name '{name}' cannot be a file name"
        )));
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| read_error(p, e));
    let ca_pem = read(&dir.join("ca.pem"))?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)
        .map_err(|e| CliError::Usage(format!("{}: {e}", dir.join("ca.key").display())))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| CliError::Usage(format!("{}: {e}", dir.join("ca.pem").display())))?;

    let out = out.unwrap_or(dir);
    let (cert_path, key_path) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    refuse_overwrite(&[&cert_path, &key_path], force)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let mut sans = Vec::new();
    for host in std::iter::once(name).filter(|n| n.parse::<IpAddr>().is_err()) {
        if let Ok(dns) = host.to_string().try_into() {
            sans.push(SanType::DnsName(dns));
        }
    }
    if let Role::Worker(worker) = &names.role {
        if !switchyard_fleet::worker::valid_name(worker) {
            return Err(CliError::Usage(format!(
                "--worker '{worker}' is not a worker name: letters, digits, '.', '_' and '-'"
            )));
        }
    }
    for host in names.dns {
        let dns = host
            .clone()
            .try_into()
            .map_err(|e| CliError::Usage(format!("--dns '{host}': {e}")))?;
        sans.push(SanType::DnsName(dns));
    }
    sans.extend(names.ips.iter().copied().map(SanType::IpAddress));
    if let Ok(ip) = name.parse::<IpAddr>() {
        sans.push(SanType::IpAddress(ip));
    }
    if let Some(uri) = names.role.uri() {
        let ia5 = uri
            .clone()
            .try_into()
            .map_err(|e| CliError::Usage(format!("cannot name {uri}: {e}")))?;
        sans.push(SanType::URI(ia5));
    }
    if sans.is_empty() {
        return Err(CliError::Usage(
            "the certificate would name no host: give --dns or --ip".into(),
        ));
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // A worker's certificate lives on a stranger's machine: it serves, and opens nothing as
    // a client (not the admin port, not another worker's sidecar). A gateway's only calls.
    params.extended_key_usages = match names.role {
        Role::Plain => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Worker(_) => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Role::Gateway => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days)?;
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.signed_by(&key, &issuer).map_err(failed)?;
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;
    // The chain after the leaf, so that a listener serving this file sends both.
    write_file(&cert_path, &format!("{}{ca_pem}", cert.pem()), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    println!("certificate: {}", cert_path.display());
    println!("key:         {} (owner-only)", key_path.display());
    Ok(())
}

fn refuse_overwrite(paths: &[&Path], force: bool) -> Result<(), CliError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => Err(CliError::Usage(format!(
            "{} exists: pass --force to replace it",
            p.display()
        ))),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| write_error(path, e))?;
    // `mode` applies only to a file it creates: one replaced with --force is narrowed too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| write_error(path, e))?;
    }
    file.write_all(text.as_bytes())
        .map_err(|e| write_error(path, e))
}

fn failed(e: rcgen::Error) -> CliError {
    CliError::Failed(format!("cannot make the certificate: {e}"))
}

fn read_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Usage(format!(
        "cannot read {}: {e} (run `switchyard ca init --dir` first)",
        path.display()
    ))
}

fn write_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Failed(format!("cannot write {}: {e}", path.display()))
}
