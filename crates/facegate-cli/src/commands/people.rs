//! Who is enrolled: `list`, `list NAME`, `forget`.

use std::process::ExitCode;

use anyhow::Result;
use facegate::gallery::GalleryError;
use facegate::service::Actor;
use facegate::Error;
use serde_json::json;

use super::quality_line;
use crate::context::Context;

/// One person's templates (never the embeddings), with the quality measured at enrollment.
pub(crate) fn list_person(ctx: &Context, name: &str) -> Result<ExitCode> {
    let unknown = || {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    };
    let gallery = ctx.gallery_for_read()?.ok_or_else(unknown)?;
    let model = gallery
        .model_id()
        .map_err(Error::from)?
        .ok_or_else(unknown)?;
    let templates = gallery.templates_of(name, &model).map_err(Error::from)?;
    let doc = json!({
        "gallery": ctx.gallery_location().to_string(),
        "person": name,
        "model": model,
        "templates": templates,
    });
    ctx.emit(&doc, || {
        println!("{name}: {} template(s), model {model}", templates.len());
        for t in &templates {
            println!("  #{} {} (enrolled {})", t.id, t.source, t.created);
            match t
                .quality
                .clone()
                .and_then(|q| serde_json::from_value::<facegate::quality::QualityReport>(q).ok())
            {
                Some(q) => println!("    {}", quality_line(&q)),
                None => println!("    quality: not measured (enrolled by an older facegate)"),
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn list(ctx: &Context) -> Result<ExitCode> {
    let (people, model) = match ctx.gallery_for_read()? {
        Some(g) => (
            g.people().map_err(Error::from)?,
            g.model_id().map_err(Error::from)?,
        ),
        None => (Vec::new(), None),
    };
    let doc =
        json!({ "gallery": ctx.gallery_location().to_string(), "model": model, "people": people });
    ctx.emit(&doc, || {
        if people.is_empty() {
            println!("nobody is enrolled yet ({})", ctx.gallery_location());
        }
        for p in &people {
            println!(
                "{}\t{} template(s)\tsince {}",
                p.name, p.templates, p.created
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn forget(ctx: &Context, name: &str) -> Result<ExitCode> {
    let gallery = ctx.gallery_for_read()?.ok_or_else(|| {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    })?;
    let removed = facegate::service::forget(gallery.as_ref(), &Actor::local_user(), name)?;
    let doc = json!({ "person": name, "templates_removed": removed });
    ctx.emit(&doc, || {
        println!("forgot {name:?}: {removed} template(s) erased")
    })?;
    Ok(ExitCode::SUCCESS)
}
