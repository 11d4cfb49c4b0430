//! Schemas from files instead of a registry, for `weir test`: each file
//! is one subject's only version, numbered from 1 in the order given.

use std::sync::Arc;

use anyhow::{Result, bail};

use crate::registry::{Lookup, Parsed, Registered, Schemas};

pub struct SchemaFiles {
    /// By id - 1.
    schemas: Vec<Arc<Registered>>,
}

impl SchemaFiles {
    /// `(subject, kind, text)`: `kind` as the registry names it (`AVRO`,
    /// `PROTOBUF`, `JSON`).
    pub fn new(files: &[(String, &str, String)]) -> Result<SchemaFiles> {
        let mut schemas = Vec::new();
        for (i, (subject, kind, text)) in files.iter().enumerate() {
            let parsed = Parsed::parse(kind, text)
                .map_err(|e| anyhow::anyhow!("subject `{subject}`: {e}"))?;
            schemas.push(Arc::new(Registered {
                id: i as u32 + 1,
                subjects: vec![subject.clone()],
                parsed: Ok(parsed),
            }));
        }
        Ok(SchemaFiles { schemas })
    }

    fn of_subject(&self, subject: &str) -> Result<&Arc<Registered>> {
        match self
            .schemas
            .iter()
            .find(|s| s.subjects.iter().any(|x| x == subject))
        {
            Some(s) => Ok(s),
            None => bail!("no schema file is given for subject `{subject}`"),
        }
    }
}

impl Schemas for SchemaFiles {
    fn lookup(&self, id: u32) -> Lookup {
        match self.schemas.get((id as usize).wrapping_sub(1)) {
            Some(s) => Lookup::Found(s.clone()),
            None => Lookup::Unusable(format!("no schema file has id {id}")),
        }
    }

    fn fetch(&self, id: u32) -> Result<Arc<Registered>> {
        match self.lookup(id) {
            Lookup::Found(s) => Ok(s),
            _ => bail!("no schema file has id {id}"),
        }
    }

    fn register(&self, subject: &str, _: &Parsed, _: &str, _: bool) -> Result<u32> {
        // The file is the subject's schema: what the transform writes is
        // checked against it.
        Ok(self.of_subject(subject)?.id)
    }

    fn latest(&self, subject: &str) -> Result<u32> {
        Ok(self.of_subject(subject)?.id)
    }
}
