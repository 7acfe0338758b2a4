//! Copying a gallery to another backend (`facegate gallery migrate`).

use serde::Serialize;

use crate::{Gallery, GalleryCounts, GalleryError};

/// People are read this many at a time.
const PAGE: usize = 500;

/// What a migration did, and the check that nothing was lost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MigrationReport {
    pub model: Option<String>,
    pub source: GalleryCounts,
    pub target_before: GalleryCounts,
    pub target_after: GalleryCounts,
    pub people_copied: usize,
    pub templates_copied: usize,
    /// Templates the target already had (same person, same photo): not copied twice.
    pub templates_already_there: usize,
    /// Source people missing from the target afterwards (must be empty).
    pub missing_people: Vec<String>,
}

impl MigrationReport {
    /// Every source person and template is in the target, and the target grew by exactly what
    /// was copied.
    pub fn is_complete(&self) -> bool {
        self.missing_people.is_empty()
            && self.templates_copied + self.templates_already_there == self.source.templates
            && self.target_after.templates == self.target_before.templates + self.templates_copied
    }
}

/// Copies every person and template of `from` into `to`, one person per transaction, calling
/// `progress` with the number of people done. Safe to run again after an interruption: what
/// is already there is skipped.
pub fn copy(
    from: &dyn Gallery,
    to: &dyn Gallery,
    progress: &mut dyn FnMut(usize),
) -> Result<MigrationReport, GalleryError> {
    let model = from.model_id()?;
    if let (Some(source), Some(target)) = (&model, to.model_id()?) {
        if *source != target {
            return Err(GalleryError::ModelMismatch {
                gallery_model: target,
                requested: source.clone(),
            });
        }
    }
    let source = from.counts()?;
    let target_before = to.counts()?;
    let model_id = model.clone().unwrap_or_default();
    let (mut people_copied, mut templates_copied, mut already) = (0, 0, 0);
    let mut after: Option<String> = None;
    loop {
        let page = from.people_page(after.as_deref(), PAGE)?;
        for person in &page {
            // With their embeddings (decrypted when the source is encrypted).
            let templates = match &model {
                Some(model) => from.templates_of(&person.name, model)?,
                None => Vec::new(),
            };
            let added = to.import_person(person, &model_id, &templates)?;
            people_copied += 1;
            templates_copied += added;
            already += templates.len() - added;
            progress(people_copied);
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.name.clone()),
            _ => break,
        }
    }
    let mut missing_people = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = from.people_page(after.as_deref(), PAGE)?;
        for person in &page {
            match to.person(&person.name) {
                Ok(found) if found.templates >= person.templates => {}
                Ok(_) | Err(GalleryError::UnknownPerson { .. }) => {
                    missing_people.push(person.name.clone())
                }
                Err(err) => return Err(err),
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.name.clone()),
            _ => break,
        }
    }
    Ok(MigrationReport {
        model,
        source,
        target_before,
        target_after: to.counts()?,
        people_copied,
        templates_copied,
        templates_already_there: already,
        missing_people,
    })
}
