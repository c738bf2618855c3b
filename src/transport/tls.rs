//! TLS material: the configured PEM certificate and key, or a certificate issued by the
//! appliance's own certificate authority in `<data_dir>/tls/` (keys mode 0600): created on first
//! start, it issues the server certificate for every name and address the host answers on, so
//! a phone that trusts the CA once (`GET /ca.crt`) accepts the appliance at any of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::auth::write_private_file;
use crate::config::Config;

/// TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The certificate could not be generated or written.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A ready TLS configuration and what an operator should know about it.
pub struct TlsMaterial {
    /// The rustls server configuration.
    pub server: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate, `AA:BB:…`.
    pub fingerprint: String,
    /// Where the certificate (chain) lives.
    pub cert_path: PathBuf,
    /// What a client should trust: the local CA's certificate, or the configured certificate.
    pub trust_path: PathBuf,
    /// Whether the certificate was (re)issued by this run.
    pub generated: bool,
}

/// Where the local certificate authority and the certificate it issued live.
struct Local {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    issued: PathBuf,
}

impl Local {
    fn at(data_dir: &Path) -> Local {
        let dir = data_dir.join("tls");
        Local {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            issued: dir.join("issued.json"),
        }
    }
}

/// What the server certificate was issued for, kept beside it to know when to reissue.
#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct Issued {
    names: Vec<String>,
    /// Unix seconds.
    not_after: i64,
}

/// The local CA's lifetime: installed once on each phone, it must outlive the appliance.
const CA_DAYS: i64 = 3650;
/// The server certificate's lifetime: Apple's platforms refuse longer ones.
const CERT_DAYS: i64 = 397;
/// Reissued at a start this close to its expiry.
const RENEW_DAYS: i64 = 30;

/// The configured certificate, or the one issued by the local CA (creating the CA on first
/// run, and issuing again when the host's names or `tls.names` changed or expiry is near).
pub fn load_or_generate(config: &Config) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path, trust_path, generated) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), c.clone(), false),
        _ => {
            let local = Local::at(&config.data_dir);
            let generated = issue_if_needed(&local, &wanted_names(config))?;
            (local.cert, local.key, local.ca_cert, generated)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(&cert_path, e))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::Pem {
            path: cert_path,
            message: "no certificate in file".into(),
        });
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_error(&key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless session tickets (keys rotated by rustls every 6 hours, never on disk): a phone
    // that lost the network resumes without a certificate signature on our side or a chain
    // check on its own. The default stateful cache holds 256 sessions, and a site's guards
    // all reconnect together when its Wi-Fi comes back.
    server.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(TlsMaterial {
        server: Arc::new(server),
        fingerprint,
        cert_path,
        trust_path,
        generated,
    })
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn generate_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(format!("{}: {e}", path.display()))
}

/// The names the local CA issues the server certificate for: loopback, this host's name, every
/// address of its interfaces (IPv6 link-local ones need a zone no URL carries, so not those)
/// and `tls.names`; sorted, without repeats.
pub fn wanted_names(config: &Config) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = gethostname::gethostname().into_string() {
        if !host.is_empty() {
            names.push(host);
        }
    }
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => names.extend(
            interfaces
                .iter()
                .map(|i| i.ip())
                .filter(|ip| !matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local()))
                .map(|ip| ip.to_string()),
        ),
        Err(e) => tracing::warn!(error = %e, "listing the host's interfaces for the certificate"),
    }
    names.extend(config.tls.names.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// Creates the CA if there is none and issues the server certificate when it is missing,
/// issued for other names, or near its expiry. Says whether it issued one.
fn issue_if_needed(local: &Local, names: &[String]) -> Result<bool, TlsError> {
    let now = time::OffsetDateTime::now_utc();
    let issued: Option<Issued> = std::fs::read(&local.issued)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let current = issued.as_ref().is_some_and(|i| {
        i.names == names && i.not_after - now.unix_timestamp() > RENEW_DAYS * 86_400
    });
    if current && local.cert.exists() && local.key.exists() {
        return Ok(false);
    }
    // Restored from a backup without the CA's key: a new CA would cut off every phone that
    // trusts this one, so nothing is made without the operator saying so.
    if local.ca_cert.exists() && !local.ca_key.exists() {
        return Err(pem_error(
            &local.ca_key,
            "is missing, and the certificate must be issued again (new names, or near its expiry): \
             restore the backup with the CA key (lookout backup --with-ca-key, restore with \
             --passphrase-file), or move tls/ aside to start a new CA (phones must then trust it again)",
        ));
    }
    let (ca, ca_key, ca_pem) = local_ca(local, names)?;
    // A name outside the CA's constraints would make phones refuse the whole certificate:
    // left out, and said (a new name on a public network needs `tls.names` before the CA is
    // made, or a CA made again).
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| pem_error(&local.ca_cert, e))?;
    let wanted = names;
    let (names, outside): (Vec<String>, Vec<String>) = names
        .iter()
        .cloned()
        .partition(|n| super::ca_scope::permits(&ca_der, n));
    if !outside.is_empty() {
        tracing::warn!(names = ?outside, "outside the local CA's name constraints: left out of the certificate");
    }
    let names = names.as_slice();
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Generate(format!("certificate names: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Lookout appliance");
    params.not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(CERT_DAYS);
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    replace_private_file(&local.key, key.serialize_pem().as_bytes())?;
    // The chain a client needs: the server's certificate, then the CA's as stored (the one
    // the phones trust, name constraints and all).
    let chain = format!("{}{}", cert.pem(), ca_pem);
    std::fs::write(&local.cert, chain).map_err(|e| generate_error(&local.cert, e))?;
    let record = Issued {
        names: wanted.to_vec(),
        not_after: not_after.unix_timestamp(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::write(&local.issued, json).map_err(|e| generate_error(&local.issued, e))?;
    tracing::info!(path = %local.cert.display(), names = ?names, "issued the server certificate from the local CA");
    Ok(true)
}

/// Writes a private file (0600) in place of `path`'s, by a rename: never a moment with a key
/// readable by others, and never half a key.
fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let next = path.with_extension("pem.new");
    let _ = std::fs::remove_file(&next);
    write_private_file(&next, bytes).map_err(|e| generate_error(&next, e))?;
    std::fs::rename(&next, path).map_err(|e| generate_error(path, e))
}

fn random_serial() -> Result<rcgen::SerialNumber, TlsError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError::Generate("no randomness for a serial number".into()))?;
    // Positive, as DER integers for serials must be.
    bytes[0] &= 0x7f;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// The CA's parameters, the same every time: with its stored key they give back the issuer a
/// certificate names, so nothing has to parse the stored CA certificate to sign with it.
fn ca_params(common_name: &str, serial: Option<rcgen::SerialNumber>) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Lookout");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = serial;
    params
}

/// The local CA: created on first run (its key 0600; its name constraints from `names`, see
/// [`super::ca_scope`]), loaded afterwards. With it, its certificate's PEM as stored.
fn local_ca(
    local: &Local,
    names: &[String],
) -> Result<(rcgen::Certificate, rcgen::KeyPair, String), TlsError> {
    if local.ca_key.exists() && local.ca_cert.exists() {
        let pem =
            std::fs::read_to_string(&local.ca_key).map_err(|e| pem_error(&local.ca_key, e))?;
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| pem_error(&local.ca_key, e))?;
        let stored =
            std::fs::read_to_string(&local.ca_cert).map_err(|e| pem_error(&local.ca_cert, e))?;
        let der = CertificateDer::from_pem_slice(stored.as_bytes())
            .map_err(|e| pem_error(&local.ca_cert, e))?;
        let (validity, subject, common_name) =
            ca_identity(&der).map_err(|e| pem_error(&local.ca_cert, e))?;
        let mut params = ca_params(&common_name, None);
        params.not_before = validity.0;
        params.not_after = validity.1;
        let ca = params
            .self_signed(&key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        // Re-derived from the stored key: it must name the same issuer the phones trust.
        if ca_identity(ca.der()).map(|(_, s, _)| s).ok() != Some(subject) {
            return Err(pem_error(
                &local.ca_cert,
                "is not a CA this appliance made: move tls/ aside to start a new CA (phones must then trust it again)",
            ));
        }
        return Ok((ca, key, stored));
    }
    let now = time::OffsetDateTime::now_utc();
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let host = gethostname::gethostname().into_string().unwrap_or_default();
    let serial = random_serial()?;
    // Unique per appliance, so two appliances' CAs (same host name) are never confused.
    let id: String = serial.as_ref()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let common_name = format!(
        "Lookout local CA {} {id}",
        host.chars().take(40).collect::<String>()
    );
    let mut params = ca_params(&common_name, Some(serial));
    params.name_constraints = Some(super::ca_scope::constraints(names));
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    let ca = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    if let Some(dir) = local.ca_key.parent() {
        std::fs::create_dir_all(dir).map_err(|e| generate_error(dir, e))?;
    }
    write_private_file(&local.ca_key, key.serialize_pem().as_bytes())
        .map_err(|e| generate_error(&local.ca_key, e))?;
    std::fs::write(&local.ca_cert, ca.pem()).map_err(|e| generate_error(&local.ca_cert, e))?;
    tracing::info!(path = %local.ca_cert.display(), "created the local certificate authority");
    let pem = ca.pem();
    Ok((ca, key, pem))
}

type Validity = (time::OffsetDateTime, time::OffsetDateTime);

/// A CA certificate's validity, subject (DER) and common name, read back from its DER.
fn ca_identity(der: &[u8]) -> Result<(Validity, Vec<u8>, String), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let validity = cert.validity();
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("no common name")?
        .to_string();
    Ok((
        (
            validity.not_before.to_datetime(),
            validity.not_after.to_datetime(),
        ),
        cert.subject().as_raw().to_vec(),
        common_name,
    ))
}

/// The DNS names and IP addresses the certificate in `cert_pem` (its first) is valid for.
pub fn covered_names(cert_pem: &[u8]) -> Result<Vec<String>, String> {
    let der = CertificateDer::from_pem_slice(cert_pem).map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(names)
}

/// The certificate the server would use, for `check-config`: its path and the names it covers.
pub fn certificate_names(config: &Config) -> Result<(PathBuf, Vec<String>), String> {
    let path = match &config.tls.cert {
        Some(c) => c.clone(),
        None => Local::at(&config.data_dir).cert,
    };
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, covered_names(&pem)?))
}

/// The fingerprint of the first certificate in a PEM file, if it has one.
pub fn file_fingerprint(path: &Path) -> Option<String> {
    let pem = std::fs::read(path).ok()?;
    CertificateDer::from_pem_slice(&pem)
        .ok()
        .map(|der| fingerprint(&der))
}

/// SHA-256 of the DER certificate, as colon-separated upper-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    /// A leaf for `name` signed with the CA's key, as whoever stole it would make one.
    fn forged_leaf(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair, name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params
            .signed_by(&key, ca, ca_key)
            .expect("leaf")
            .der()
            .to_vec()
    }

    #[test]
    fn a_stolen_ca_key_cannot_make_a_certificate_phones_accept_for_another_site() {
        let dir = tempfile::tempdir().expect("dir");
        let local = Local::at(dir.path());
        let names = vec!["guardhouse".to_string(), "192.168.1.20".to_string()];
        let (ca, ca_key, ca_pem) = local_ca(&local, &names).expect("ca");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("der"))
            .expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let verify = |leaf_for: &str, dialled: &str| {
            let leaf = CertificateDer::from(forged_leaf(&ca, &ca_key, leaf_for));
            verifier.verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(dialled.to_string()).expect("name"),
                &[],
                UnixTime::now(),
            )
        };
        assert!(verify("guardhouse", "guardhouse").is_ok());
        assert!(verify("gate.site.lan", "gate.site.lan").is_ok());
        let forged = verify("www.bank.com", "www.bank.com");
        assert!(forged.is_err(), "{forged:?}");
        // Loaded again from disk, the CA keeps its constraints.
        let (_, _, again) = local_ca(&local, &[]).expect("load");
        assert_eq!(again, ca_pem);
    }
}
