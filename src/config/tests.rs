//! Tests of the configuration tree: layering, env names, validation.

use super::*;
use crate::auth::AuthMode;

#[test]
fn layers_apply_in_order() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("berth.toml", "listen = \"127.0.0.1:1\"\ndata_dir = \"/from-file\"\n[limits]\nmax_manifest_bytes = 10\n")?;
        jail.set_env("BERTH_DATA_DIR", "/from-env");
        jail.set_env("BERTH_BIN", "/not/a/setting");
        jail.set_env("BERTH_LIMITS__MAX_MANIFEST_BYTES", "20");
        let overrides = Overrides {
            listen: Some("127.0.0.1:2".into()),
            ..Overrides::default()
        };
        let c = Config::load(Some(Path::new("berth.toml")), &overrides).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.data_dir, PathBuf::from("/from-env"));
        assert_eq!(c.limits.max_manifest_bytes, 20);
        assert!(c.uploads.auto_mount);
        jail.set_env("BERTH_ADMIN_PASSWORD", "s3cret");
        jail.set_env("BERTH_AUTH__MODE", "none");
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.auth.admin_password.as_deref(), Some("s3cret"));
        assert_eq!(c.auth.mode, AuthMode::None);
        assert!(!c.to_toml().contains("s3cret"), "secrets are redacted");
        jail.set_env("BERTH_STORAGE__KIND", "s3");
        jail.set_env("BERTH_STORAGE__S3__ENDPOINT", "http://127.0.0.1:3900");
        jail.set_env("BERTH_STORAGE__S3__SECRET_ACCESS_KEY", "k3y-s3cret");
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.storage.kind, crate::storage::StorageKind::S3);
        assert_eq!(
            c.storage.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:3900")
        );
        assert!(!c.to_toml().contains("k3y-s3cret"), "secrets are redacted");
        Ok(())
    });
}

#[test]
fn unknown_keys_and_missing_files_are_errors() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "lisen = \"x\"\n")?;
        assert!(Config::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
        assert!(Config::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err());
        Ok(())
    });
}

#[test]
fn tls_flags_override_only_what_they_name() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("berth.toml", "[tls]\nhsts_max_age_seconds = 7\n")?;
        let overrides = Overrides {
            tls: Some(TlsOverrides {
                self_signed: true,
                ..TlsOverrides::default()
            }),
            ..Overrides::default()
        };
        let c = Config::load(Some(Path::new("berth.toml")), &overrides).unwrap();
        assert!(c.tls.self_signed);
        assert_eq!(c.tls.hsts_max_age_seconds, 7);
        assert_eq!(c.tls.cert_file, None);
        Ok(())
    });
}

#[test]
fn validation_reports_every_problem() {
    assert_eq!(Config::default().validate(), Ok(()));
    let mut c = Config {
        listen: "localhost".into(),
        ..Config::default()
    };
    c.tls.cert_file = Some("/nonexistent/cert.pem".into());
    c.limits.max_manifest_bytes = 0;
    let problems = c.validate().unwrap_err().0;
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].starts_with("listen = \"localhost\": "),
        "{problems:?}"
    );
    assert!(problems.contains(&"tls.cert_file is set but tls.key_file is not".to_string()));
    assert!(
        problems.contains(&"tls.cert_file = \"/nonexistent/cert.pem\": no such file".to_string())
    );
    c = Config {
        listen: "127.0.0.1:5000".into(),
        ..Config::default()
    };
    c.tls.client_ca_file = Some("/nonexistent/ca.pem".into());
    assert_eq!(c.validate().unwrap_err().0.len(), 2);
}

#[test]
fn env_vars_naming_no_setting_are_listed() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("BERTH_LISTNE", "127.0.0.1:1");
        jail.set_env("BERTH_BIN", "/bin/berth");
        jail.set_env("BERTH_CONFIG", "berth.toml");
        jail.set_env("BERTH_LISTEN", "127.0.0.1:2");
        jail.set_env("BERTH_AUTH__MODE", "none");
        jail.set_env("BERTH_ADMIN_PASSWORD", "x");
        assert_eq!(Config::unknown_env_vars(), vec!["BERTH_LISTNE".to_string()]);
        Ok(())
    });
}

#[test]
fn printed_config_round_trips() {
    let c = Config::default();
    let back: Config = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(back, c);
}
