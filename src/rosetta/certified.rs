//! The certified implementations on the Rosetta: `docs/certified-calls.json`, written by
//! `segloss matrix --calls` from the `certify --json` reports of `scripts/conformance.sh`. For each
//! implementation, the calls its adapter declares for catalog losses (in its hello, or the
//! built-in adapter's [`Implementation::calls`](crate::certify::Implementation::calls)) and what
//! certification found over every check of those losses: passed, known failures with their
//! reasons, options it does not support.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::certify::report::{certified_losses, CertifiedLoss};

/// The format's name, in the file.
pub const FORMAT: &str = "segloss-certified-calls";
/// The format's version.
pub const VERSION: u64 = 1;

/// The committed file the page is rendered from.
pub const BUNDLED: &str = include_str!("../../docs/certified-calls.json");

/// Every certified implementation that declares calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedCalls {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u64,
    /// The implementations, in the order of the reports.
    pub implementations: Vec<CertifiedImplementation>,
}

/// One implementation's declared calls, loss by loss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedImplementation {
    /// Its name, as its report gives it.
    pub name: String,
    /// The tolerance tier it was certified at.
    pub tier: String,
    /// The losses it declares calls for.
    pub losses: Vec<CertifiedLoss>,
}

impl CertifiedCalls {
    /// The file's contents from `certify --json` reports; a report that declares no calls adds
    /// nothing. `Err` names the malformed report by its index, and says why.
    pub fn from_reports(reports: &[Value]) -> Result<CertifiedCalls, (usize, String)> {
        let mut implementations = Vec::new();
        for (index, report) in reports.iter().enumerate() {
            let malformed = |why: String| (index, why);
            let losses = certified_losses(report).map_err(malformed)?;
            if losses.is_empty() {
                continue;
            }
            let text = |key: &str| {
                report[key]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| malformed(format!("no {key}")))
            };
            implementations.push(CertifiedImplementation {
                name: text("implementation")?,
                tier: text("tier")?,
                losses,
            });
        }
        Ok(CertifiedCalls {
            format: FORMAT.to_string(),
            version: VERSION,
            implementations,
        })
    }

    /// Reads the file's text; `Err` says why it is not this format and version.
    pub fn parse(text: &str) -> Result<CertifiedCalls, String> {
        let calls: CertifiedCalls =
            serde_json::from_str(text).map_err(|error| error.to_string())?;
        if calls.format != FORMAT || calls.version != VERSION {
            return Err(format!(
                "{} version {}, not {FORMAT} version {VERSION}",
                calls.format, calls.version
            ));
        }
        Ok(calls)
    }

    /// The committed file ([`BUNDLED`]).
    pub fn bundled() -> Result<CertifiedCalls, String> {
        CertifiedCalls::parse(BUNDLED).map_err(|why| format!("docs/certified-calls.json: {why}"))
    }
}
