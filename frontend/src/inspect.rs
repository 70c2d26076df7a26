//! What the in-build `inspect` step found in a finished image, as it hands it to the flow: a
//! small JSON file the step writes and the flow reads back with `ReadFile`.

use serde::{Deserialize, Serialize};

/// The version of [`Inspection`]'s JSON form.
pub const VERSION: u32 = 1;

/// Where the step writes its findings, relative to its output mount.
pub const FILE: &str = "inspection.json";

/// What the `inspect` step found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    /// [`VERSION`].
    pub version: u32,
    /// Paths the build made whose names image layers reserve for whiteouts (see
    /// [`crate::scan::WHITEOUT_PREFIX`]).
    pub reserved: Vec<String>,
}

/// Why the findings stop the squash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InspectError {
    /// The step's file does not read.
    #[error("the inspect step wrote findings squash-frontend cannot read: {0}")]
    Unreadable(String),
    /// The build made files no image layer can hold.
    #[error("{what}: the build made {first}{more}; image layers reserve names that start with .wh. for whiteouts (OCI image spec, layer whiteouts), so every store would hide a file next to it instead of holding this one: rename it")]
    Reserved {
        /// The image (platform) it was found in.
        what: String,
        /// The first such path.
        first: String,
        /// How many more, said in words.
        more: String,
    },
}

impl Inspection {
    /// Reads the step's file.
    pub fn parse(bytes: &[u8]) -> Result<Inspection, InspectError> {
        let found: Inspection =
            serde_json::from_slice(bytes).map_err(|e| InspectError::Unreadable(e.to_string()))?;
        if found.version != VERSION {
            return Err(InspectError::Unreadable(format!(
                "version {} (this frontend reads version {VERSION})",
                found.version
            )));
        }
        Ok(found)
    }

    /// The step's file.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serialises")
    }

    /// Whether the squash may go on; `what` names the image in the error.
    pub fn check(&self, what: &str) -> Result<(), InspectError> {
        match self.reserved.split_first() {
            None => Ok(()),
            Some((first, rest)) => Err(InspectError::Reserved {
                what: what.to_string(),
                first: first.clone(),
                more: match rest.len() {
                    0 => String::new(),
                    1 => format!(" and {}", rest[0]),
                    n => format!(" and {n} more such paths"),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version() {
        let found = Inspection {
            version: VERSION,
            reserved: vec!["/opt/.wh.a".into()],
        };
        assert_eq!(Inspection::parse(&found.to_json()), Ok(found));
        assert!(matches!(
            Inspection::parse(br#"{"version":99,"reserved":[]}"#),
            Err(InspectError::Unreadable(m)) if m.contains("version 99")
        ));
        assert!(Inspection::parse(b"garbage").is_err());
    }

    #[test]
    fn reserved_names_stop_the_squash_naming_the_path() {
        let mut found = Inspection {
            version: VERSION,
            reserved: vec![],
        };
        assert_eq!(found.check("image"), Ok(()));
        found.reserved = vec!["/opt/keep/.wh.a".into()];
        let e = found.check("linux/amd64").unwrap_err().to_string();
        assert!(
            e.starts_with("linux/amd64: the build made /opt/keep/.wh.a; image layers reserve"),
            "{e}"
        );
        found.reserved.push("/b/.wh.c".into());
        assert!(found
            .check("x")
            .unwrap_err()
            .to_string()
            .contains("/opt/keep/.wh.a and /b/.wh.c;"));
        found.reserved.push("/d/.wh..wh..opq".into());
        assert!(found
            .check("x")
            .unwrap_err()
            .to_string()
            .contains("and 2 more such paths"));
    }
}
