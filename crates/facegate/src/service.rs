//! The application service under every front end. Decisions (verify, identify, on photos
//! and on video), enrollment, renaming, erasure, rekeying and audit-chain restarts are made for an
//! [`Actor`] and written to the audit log under that actor's name, in the same transaction
//! as the change for writes.
//!
//! The command line and the HTTP API call these instead of assembling the engine, the gallery
//! and the audit entry themselves, so a decision is made, accepted and recorded the same way
//! whichever front end asked. Front ends keep what is theirs: parsing, output, status codes.

use facegate_gallery::audit_chain;
use facegate_gallery::{
    AuditKey, EnrollOptions, EnrollReport, Gallery, GalleryError, NewAuditEvent, NewTemplate,
    RenameReport, Template, TemplateKey,
};
use facegate_image::LoadedImage;
use facegate_video::FrameSource;

use crate::challenge::{ChallengeOutcome, ChallengeTarget};
use crate::ops::{self, IdentifyOutcome, IndexCache, UnmatchedFace, VerifyOutcome};
use crate::video::{
    self, IdentifyFromVideo, PresenceEvent, StopFlag, VerifyFromVideo, VideoVerifyOutcome,
};
use crate::{audit, Engine, Error};
use facegate_challenge::{Rules, State as ChallengeState, Step};

/// Who asks, as the audit log names them, and whether they may learn who is enrolled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    name: String,
    sees_people: bool,
}

impl Actor {
    /// The user running the command line (`local:<user>`), who may see everything.
    pub fn local_user() -> Actor {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_string());
        Actor {
            name: format!("local:{user}"),
            sees_people: true,
        }
    }

    /// An API key (`key:<id>`); `sees_people` when its role may list who is enrolled.
    pub fn api_key(key_id: &str, sees_people: bool) -> Actor {
        Actor {
            name: format!("key:{key_id}"),
            sees_people,
        }
    }

    /// A caller of a server that runs without keys, who is allowed everything.
    pub fn anonymous() -> Actor {
        Actor {
            name: "anonymous".to_string(),
            sees_people: true,
        }
    }

    /// The name the audit log records.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this actor may learn who is enrolled (and so tell an unknown name from a
    /// failed match, and see distances).
    pub fn sees_people(&self) -> bool {
        self.sees_people
    }
}

/// The answer to a verification.
#[derive(Clone, Debug)]
pub enum Verification {
    /// The photo's face compared with the person's templates.
    Compared(VerifyOutcome),
    /// Nobody has this name, answered to an actor who may not learn that: the photo was
    /// checked as a comparison would check it (so bad photos fail the same way), and the
    /// answer is a failed match.
    NoSuchPerson { person: String, face: UnmatchedFace },
}

impl Verification {
    /// Whether the verification lets the person in: a match, live when liveness is checked.
    pub fn accepted(&self) -> bool {
        match self {
            Verification::Compared(outcome) => outcome.accepted,
            Verification::NoSuchPerson { .. } => false,
        }
    }
}

/// The engine and the gallery, with the search index kept between calls when the caller has
/// one (a server does; a one-off command does not need it).
#[derive(Clone, Copy)]
pub struct FaceService<'a> {
    engine: &'a Engine,
    gallery: &'a dyn Gallery,
    index: Option<&'a IndexCache>,
}

impl<'a> FaceService<'a> {
    pub fn new(engine: &'a Engine, gallery: &'a dyn Gallery) -> FaceService<'a> {
        FaceService {
            engine,
            gallery,
            index: None,
        }
    }

    /// The same service, keeping the 1:N search index in `cache` between calls.
    pub fn with_index(self, cache: &'a IndexCache) -> FaceService<'a> {
        FaceService {
            index: Some(cache),
            ..self
        }
    }

    pub fn engine(&self) -> &'a Engine {
        self.engine
    }

    pub fn gallery(&self) -> &'a dyn Gallery {
        self.gallery
    }

    /// 1:1: is the person in `image` the enrolled `person`? Audited as `verify`. An actor who
    /// may not see who is enrolled gets [`Verification::NoSuchPerson`] for an unknown name;
    /// anyone else gets [`GalleryError::UnknownPerson`].
    pub fn verify(
        &self,
        actor: &Actor,
        person: &str,
        image: &LoadedImage,
        all_faces: bool,
    ) -> Result<Verification, Error> {
        match ops::verify(self.engine, self.gallery, person, image, all_faces) {
            Ok(outcome) => {
                self.record(audit::verify(actor.name(), &outcome))?;
                Ok(Verification::Compared(outcome))
            }
            Err(Error::Gallery(GalleryError::UnknownPerson { .. })) if !actor.sees_people() => {
                let face = ops::check_face_only(self.engine, image)?;
                self.record(audit::verify_unknown(actor.name(), person))?;
                Ok(Verification::NoSuchPerson {
                    person: person.to_string(),
                    face,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// 1:N: who in the gallery is the person in `image`? Audited as `identify`.
    pub fn identify(
        &self,
        actor: &Actor,
        image: &LoadedImage,
        top: usize,
        all_faces: bool,
    ) -> Result<IdentifyOutcome, Error> {
        let outcome = match self.index {
            Some(cache) => {
                ops::identify_cached(self.engine, self.gallery, cache, image, top, all_faces)?
            }
            None => ops::identify(self.engine, self.gallery, image, top, all_faces)?,
        };
        self.record(audit::identify(actor.name(), &outcome))?;
        Ok(outcome)
    }

    /// Every face of `image` against one stored template (CompreFace's "verify against an
    /// example"). Audited as a `verify` of the template's person: `match` when the closest
    /// face is within the 1:1 threshold.
    pub fn verify_example(
        &self,
        actor: &Actor,
        template_id: i64,
        image: &LoadedImage,
    ) -> Result<(Template, ops::FacesAgainstReference), Error> {
        let listed = self.gallery.template_info(template_id)?.ok_or_else(|| {
            GalleryError::UnknownTemplate {
                name: "anyone".to_string(),
                id: template_id,
            }
        })?;
        let template = self
            .gallery
            .templates_of(&listed.person, self.engine.model_id())?
            .into_iter()
            .find(|t| t.id == template_id)
            .ok_or_else(|| GalleryError::ModelMismatch {
                gallery_model: listed.model_id.clone(),
                requested: self.engine.model_id().to_string(),
            })?;
        let against = ops::faces_against(self.engine, &template.embedding, image)?;
        let closest = against
            .faces
            .iter()
            .min_by(|a, b| a.distance.total_cmp(&b.distance));
        self.record(audit::verify_example(
            actor.name(),
            &template.person,
            template_id,
            closest.map(|f| (f.distance, f.is_match)),
            &against.model,
        ))?;
        Ok((template, against))
    }

    /// A liveness challenge answered on frames from `source`, judged on one tracked face
    /// whose identity is checked between the movements (see [`crate::challenge`]). Audited as
    /// `challenge`: `passed`, or `failed` with the reason.
    #[allow(clippy::too_many_arguments)]
    pub fn challenge(
        &self,
        actor: &Actor,
        target: &ChallengeTarget,
        source: &mut dyn FrameSource,
        steps: Vec<Step>,
        rules: Rules,
        stop: &StopFlag,
        on_state: &mut dyn FnMut(&ChallengeState),
    ) -> Result<ChallengeOutcome, Error> {
        let outcome = crate::challenge::run_challenge(
            self.engine,
            self.gallery,
            source,
            steps,
            rules,
            target,
            stop,
            on_state,
        )?;
        self.record(audit::challenge(actor.name(), target, &outcome))?;
        Ok(outcome)
    }

    /// Records a challenge decided elsewhere (the server judges its frames batch by batch).
    pub fn challenge_decided(
        &self,
        actor: &Actor,
        target: &ChallengeTarget,
        outcome: &ChallengeOutcome,
    ) -> Result<(), Error> {
        self.record(audit::challenge(actor.name(), target, outcome))
    }

    fn record(&self, entry: facegate_gallery::NewAuditEvent) -> Result<(), Error> {
        Ok(self.gallery.append_audit(&entry)?)
    }
}

/// Erases a person and all their templates, with the audit entry in the same transaction;
/// the number of templates erased. Needs no models.
pub fn forget(gallery: &dyn Gallery, actor: &Actor, person: &str) -> Result<usize, Error> {
    let entry = |removed: usize| {
        audit::erase(
            actor.name(),
            "forget",
            person,
            format!("{removed} template(s)"),
        )
    };
    Ok(gallery.forget_with(person, Some(&entry))?)
}

/// How an enrollment treats the person's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollMode {
    /// A new person: refused with [`GalleryError::PersonExists`] when the name is taken.
    NewPerson,
    /// Faces for a person who must already exist, under the check.
    AddFaces(FaceCheck),
    /// A new person, or more faces for an existing one, unchecked (the local user).
    CreateOrAdd,
}

/// What adding faces to a person who has some requires of the new faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaceCheck {
    /// Any face (an administrator).
    None,
    /// Each new face must match the person's enrolled faces at the 1:1 threshold.
    MustMatch,
    /// Only administrators may add faces to a person who has some.
    AdminOnly,
}

/// An enrollment allowed to go ahead by [`FaceService::admit_enrollment`], before any photo is
/// embedded; [`FaceService::enroll`] finishes it.
#[derive(Clone, Debug)]
pub struct AdmittedEnrollment {
    person: String,
    new_person: bool,
    /// The enrolled templates new faces must match, when the check asks for it.
    must_match: Option<Vec<Template>>,
}

impl AdmittedEnrollment {
    /// The person's name as stored (Unicode NFC).
    pub fn person(&self) -> &str {
        &self.person
    }
}

impl<'a> FaceService<'a> {
    /// The checks an enrollment passes before any photo is embedded: the name is valid, the
    /// person exists or not as `mode` requires, and the actor may add faces to them. A refusal
    /// by policy is audited.
    pub fn admit_enrollment(
        &self,
        actor: &Actor,
        person: &str,
        mode: EnrollMode,
    ) -> Result<AdmittedEnrollment, Error> {
        let person = facegate_gallery::normalize_name(person)?;
        match (mode, self.gallery.person(&person)) {
            (EnrollMode::NewPerson, Ok(_)) => {
                return Err(GalleryError::PersonExists { name: person }.into())
            }
            (EnrollMode::AddFaces(_), Err(err)) => return Err(err.into()),
            _ => {}
        }
        let check = match mode {
            EnrollMode::AddFaces(check) => check,
            EnrollMode::NewPerson | EnrollMode::CreateOrAdd => FaceCheck::None,
        };
        let must_match = match check {
            FaceCheck::MustMatch | FaceCheck::AdminOnly => {
                Some(self.gallery.templates_of(&person, self.engine.model_id())?)
            }
            FaceCheck::None => None,
        };
        if check == FaceCheck::AdminOnly && must_match.as_ref().is_some_and(|t| !t.is_empty()) {
            let why =
                "policy admin-only: only administrators may add faces to a person who has some";
            self.record(audit::enroll_refused(
                actor.name(),
                &person,
                None,
                why.into(),
            ))?;
            return Err(Error::AddFacesForbidden { person });
        }
        Ok(AdmittedEnrollment {
            new_person: mode == EnrollMode::NewPerson,
            person,
            must_match,
        })
    }

    /// Stores the new templates of an admitted enrollment: the person (when new), the
    /// templates and the audit entry in one transaction. New faces that must match the
    /// person's and do not are refused (audited) and nothing is stored. With no faces, a new
    /// person is created without templates.
    pub fn enroll(
        &self,
        actor: &Actor,
        admitted: &AdmittedEnrollment,
        templates: &[NewTemplate],
    ) -> Result<EnrollReport, Error> {
        let person = admitted.person.as_str();
        let worst = match &admitted.must_match {
            Some(enrolled) => {
                match ops::check_new_faces_match(self.engine, person, enrolled, templates) {
                    Ok(worst) => worst,
                    Err(err) => {
                        let distance = match &err {
                            Error::FaceMismatch { distance, .. } => Some(*distance),
                            _ => None,
                        };
                        let why = format!("policy matching: {err}");
                        self.record(audit::enroll_refused(actor.name(), person, distance, why))?;
                        return Err(err);
                    }
                }
            }
            None => None,
        };
        let model = self.engine.model_id();
        let entry = |report: &EnrollReport| {
            let (added, already) = (report.added.len(), report.duplicates.len());
            let mut entry = audit::enroll(actor.name(), person, added, already, model);
            if let (Some(detail), Some(worst)) = (entry.detail.as_mut(), worst) {
                detail.push_str(&format!(
                    "; policy matching: every new face matched (largest distance {worst:.3})"
                ));
            }
            entry
        };
        if templates.is_empty() {
            // A person without photos yet: nothing biometric to write with the entry.
            if admitted.new_person {
                self.gallery.create_person(person)?;
            }
            let report = EnrollReport::default();
            self.record(entry(&report))?;
            return Ok(report);
        }
        let options = EnrollOptions {
            new_person: admitted.new_person,
            audit: Some(&entry),
        };
        Ok(self
            .gallery
            .enroll_with(person, model, templates, &options)?)
    }
}

/// Removes one template of a person, with the audit entry in the same transaction.
pub fn remove_template(
    gallery: &dyn Gallery,
    actor: &Actor,
    person: &str,
    template_id: i64,
) -> Result<(), Error> {
    let entry = audit::erase(
        actor.name(),
        "remove_template",
        person,
        format!("template {template_id}"),
    );
    Ok(gallery.remove_template_with(person, template_id, Some(&entry))?)
}

/// Renames a person (merging into whoever has the new name), with the audit entry in the same
/// transaction.
pub fn rename(
    gallery: &dyn Gallery,
    actor: &Actor,
    from: &str,
    to: &str,
) -> Result<RenameReport, Error> {
    let entry = |report: &RenameReport| audit::rename(actor.name(), from, report);
    Ok(gallery.rename_person_with(from, to, Some(&entry))?)
}

/// What [`rekey`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rekeyed {
    pub templates: usize,
    pub old_key_id: Option<String>,
    pub new_key_id: Option<String>,
}

/// Rewrites every template under `new_key` (or in the clear with `None`) in one transaction,
/// with the audit entry naming both key ids (never the keys).
pub fn rekey(
    gallery: &dyn Gallery,
    actor: &Actor,
    new_key: Option<&TemplateKey>,
) -> Result<Rekeyed, Error> {
    let old_key_id = gallery.key_id()?;
    let new_key_id = new_key.map(|k| k.id().to_string());
    let entry = |rewritten: usize| {
        audit::rekey(
            actor.name(),
            old_key_id.as_deref(),
            new_key_id.as_deref(),
            rewritten,
        )
    };
    let templates = gallery.rekey_with(new_key, Some(&entry))?;
    Ok(Rekeyed {
        templates,
        old_key_id,
        new_key_id,
    })
}

/// Starts a new audit chain under `key`, for when the key the log was sealed with is lost: an
/// entry saying so, sealed as the first of a chain. The id of the key that sealed the newest
/// entry before it, if any.
pub fn restart_audit_chain(
    gallery: &dyn Gallery,
    actor: &Actor,
    key: &AuditKey,
) -> Result<Option<String>, Error> {
    let previous = gallery.audit_newest_sealed()?.and_then(|e| e.key_id);
    let entry = NewAuditEvent {
        actor: actor.name().to_string(),
        action: audit_chain::RESTART_ACTION.to_string(),
        person: None,
        decision: Some("restarted".to_string()),
        distance: None,
        detail: Some(format!(
            "new chain under audit key {}; the previous entry was sealed with key {}",
            key.id(),
            previous.as_deref().unwrap_or("none")
        )),
    };
    gallery.append_audit(&entry)?;
    Ok(previous)
}

impl<'a> FaceService<'a> {
    /// K-of-N verification over a video or camera; audited as one `verify` entry naming the
    /// source.
    pub fn verify_video(
        &self,
        actor: &Actor,
        person: &str,
        source: &mut dyn FrameSource,
        settings: &VerifyFromVideo,
        stop: &StopFlag,
    ) -> Result<VideoVerifyOutcome, Error> {
        let outcome =
            video::verify_video(self.engine, self.gallery, person, source, settings, stop)?;
        self.record(audit::video_verify(
            actor.name(),
            &outcome,
            &source.describe(),
        ))?;
        Ok(outcome)
    }

    /// Who appears in a video or camera view, as [`PresenceEvent`]s given to `on_event`; one
    /// `identify` audit entry per face entering the view (not per frame). A failure to record
    /// stops nothing mid-stream and is returned at the end.
    pub fn identify_video(
        &self,
        actor: &Actor,
        source: &mut dyn FrameSource,
        settings: &IdentifyFromVideo,
        stop: &StopFlag,
        on_event: &mut dyn FnMut(PresenceEvent),
    ) -> Result<(), Error> {
        let described = source.describe();
        let mut audit_failure = None;
        video::identify_video(
            self.engine,
            self.gallery,
            source,
            settings,
            stop,
            &mut |event| {
                if let PresenceEvent::Enter {
                    person,
                    distance,
                    time_s,
                    ..
                } = &event
                {
                    let entry = audit::video_presence(
                        actor.name(),
                        person.as_deref(),
                        *distance,
                        &described,
                        *time_s,
                    );
                    if let Err(err) = self.gallery.append_audit(&entry) {
                        audit_failure.get_or_insert(err);
                    }
                }
                on_event(event);
            },
        )?;
        match audit_failure {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }
}
