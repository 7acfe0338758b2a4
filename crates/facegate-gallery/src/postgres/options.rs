//! Where and how to connect: the `postgres://` URL with facegate's own settings, TLS, and
//! passwords kept out of messages.

use super::*;

/// How identify searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchMode {
    /// Exact below 20,000 templates, the HNSW index above.
    Auto,
    /// Always a full scan: exact answers, cost linear in the gallery.
    Exact,
    /// Always the HNSW index: approximate, fast at millions of templates.
    Index,
}

/// Where and how to connect, parsed from a `postgres://` URL. facegate's own settings ride in
/// the query string and are removed before the URL reaches PostgreSQL:
/// `search=auto|exact|index`, `ef_search=N` (HNSW candidate list, default 100),
/// `pool=N` (connections, default 8), `timeout=SECONDS` (per statement, default 30),
/// `sslrootcert=FILE` (PEM certificates to trust besides the system's, for TLS).
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The URL with any password replaced by `***`, for messages and logs.
    pub display: String,
    pub(super) config: postgres::Config,
    pub search: SearchMode,
    pub ef_search: u32,
    pub pool_size: u32,
    pub statement_timeout: Duration,
    pub root_certificates: Option<std::path::PathBuf>,
}

impl PostgresOptions {
    pub fn parse(url: &str) -> Result<PostgresOptions, GalleryError> {
        let display = redact(url);
        let invalid = |message: String| GalleryError::PostgresSetup {
            target: display.clone(),
            message,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut passed = Vec::new();
        let mut root_certificates = None;
        let (mut search, mut ef_search, mut pool_size, mut timeout) =
            (SearchMode::Auto, 100u32, 8u32, 30u64);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| {
                value.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    invalid(format!(
                        "{what} must be a positive whole number, not {value:?}"
                    ))
                })
            };
            match key {
                "search" => {
                    search = match value {
                        "auto" => SearchMode::Auto,
                        "exact" => SearchMode::Exact,
                        "index" => SearchMode::Index,
                        other => {
                            return Err(invalid(format!(
                                "search must be auto, exact or index, not {other:?}"
                            )))
                        }
                    }
                }
                "ef_search" => ef_search = number("ef_search")?.min(1000),
                "pool" => pool_size = number("pool")?,
                "timeout" => timeout = u64::from(number("timeout")?),
                "sslrootcert" => root_certificates = Some(std::path::PathBuf::from(value)),
                _ => passed.push(pair),
            }
        }
        let url = if passed.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        let mut config = postgres::Config::from_str(&url)
            .map_err(|e| invalid(format!("not a valid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("facegate");
        }
        Ok(PostgresOptions {
            display,
            config,
            search,
            ef_search,
            pool_size,
            statement_timeout: Duration::from_secs(timeout),
            root_certificates,
        })
    }
}

/// TLS for `sslmode=prefer` (the default: used when the server offers it) and `require`. The
/// server's certificate is always verified, against the system's roots plus `sslrootcert`,
/// and must name the host (as libpq's `verify-full`).
pub(super) fn tls_connector(options: &PostgresOptions) -> Result<MakeRustlsConnect, GalleryError> {
    let setup = |message: String| GalleryError::PostgresSetup {
        target: options.display.clone(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A malformed system certificate is skipped, as browsers do.
        let _ = roots.add(certificate);
    }
    if let Some(path) = &options.root_certificates {
        let pem = std::fs::read(path).map_err(|err| {
            setup(format!(
                "could not read sslrootcert {}: {err}",
                path.display()
            ))
        })?;
        let mut added = 0;
        for certificate in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let certificate: rustls::pki_types::CertificateDer<'static> = certificate
                .map_err(|err| setup(format!("sslrootcert {}: {err}", path.display())))?;
            roots
                .add(certificate)
                .map_err(|err| setup(format!("sslrootcert {}: {err}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(setup(format!(
                "sslrootcert {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| setup(format!("TLS setup failed: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cr3t@db.example:5432/faces?search=exact"),
            "postgres://app:***@db.example:5432/faces?search=exact"
        );
        assert_eq!(redact("postgres://app@db/faces"), "postgres://app@db/faces");
    }

    #[test]
    fn facegate_settings_are_taken_out_of_the_url() {
        let o = PostgresOptions::parse(
            "postgres://u@127.0.0.1:5/db?search=exact&ef_search=64&pool=3&timeout=9&sslmode=disable",
        )
        .unwrap();
        assert_eq!(o.search, SearchMode::Exact);
        assert_eq!((o.ef_search, o.pool_size), (64, 3));
        assert_eq!(o.statement_timeout, Duration::from_secs(9));
        assert_eq!(o.config.get_dbname(), Some("db"));
        assert!(PostgresOptions::parse("postgres://u@h/db?search=fast").is_err());
        assert!(PostgresOptions::parse("postgres://u@h/db?pool=0").is_err());
    }
}
