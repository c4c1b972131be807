//! Node configuration, passed explicitly (no global settings).

use caravan_domain::SlaPolicy;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Shown in the page header.
    pub node_name: String,
    pub sla: SlaPolicy,
    /// Assign the best-ranked consultant automatically on submit and after a decline.
    pub auto_assign: bool,
    /// Largest accepted attachment.
    pub max_upload_bytes: usize,
    /// Set the `Secure` flag on cookies. On by default; the demo on plain http://127.0.0.1 turns it off.
    pub secure_cookies: bool,
    /// Default UI language when neither the user, a cookie nor the browser says otherwise.
    pub default_locale: String,
    /// How often the SLA escalation sweep runs.
    pub sweep_every: std::time::Duration,
    /// Health-certificate material (trust lists, rules, issuing keys): `DATA/certs`. `None`: certificate pages
    /// answer 503.
    pub certs_dir: Option<std::path::PathBuf>,
    /// Serve HTTPS with this identity (and mutual TLS for federation peers if it says so); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<crate::tls::NodeTls>>,
    /// Aberration detection on surveillance reports; `None`: Farrington flexible with the Noufaily settings,
    /// falling back to EARS C2 for short series (`surveil::default_method`).
    pub surveillance_method: Option<surveillance::Method>,
    /// Video visits: TURN relay, relay-only policy, audio-only thresholds.
    pub visits: crate::visits::VisitsConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_name: "Caravan".into(),
            sla: SlaPolicy::default(),
            auto_assign: true,
            max_upload_bytes: 20 * 1024 * 1024,
            secure_cookies: true,
            default_locale: "en".into(),
            sweep_every: std::time::Duration::from_secs(60),
            certs_dir: None,
            tls: None,
            surveillance_method: None,
            visits: crate::visits::VisitsConfig::default(),
        }
    }
}
