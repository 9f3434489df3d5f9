//! The OpenAPI 3 document served at `/api/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` attributes and the DTOs' schemas.
//!
//! Only the document lives here; it must not describe a route that `api::routes` and
//! `ops::routes` do not serve (a test holds it to [`crate::api::ROUTES`] and
//! [`crate::ops::ROUTES`]).

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::audit;
use crate::debug;
use crate::dto::*;
use crate::error::ErrorBody;
use crate::modules;
use crate::occurrences;
use crate::ops;
use crate::secrets;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Traitor",
        description = "Cron and delay jobs whose bodies are JavaScript. Success bodies are \
                       `{\"data\": …}`; errors are `{\"error\", \"code\", \"field\"?}`. With \
                       API tokens configured, every `/api` call needs `Authorization: Bearer \
                       <secret>` of one of them, whose name the audit log records; without \
                       any, only loopback clients are served."
    ),
    paths(
        api::create_job,
        api::update_job,
        api::delete_job,
        api::get_job,
        api::job_list,
        api::list_jobs,
        api::get_script,
        api::set_script,
        api::enable,
        api::run,
        api::trigger,
        api::list_runs,
        api::get_run,
        api::cron_preview,
        api::health,
        api::stats,
        api::cluster,
        api::openapi_json,
        debug::debug,
        occurrences::versions,
        occurrences::version,
        occurrences::rollback,
        occurrences::plan,
        occurrences::pause,
        occurrences::resume,
        occurrences::backfill,
        occurrences::occurrences,
        ops::metrics,
        ops::readyz,
        secrets::put_secret,
        secrets::list_secrets,
        secrets::delete_secret,
        secrets::kv_list,
        secrets::kv_delete,
        audit::list,
        modules::put_module,
        modules::list_modules,
        modules::get_module,
        modules::module_versions,
        modules::rollback_module,
        modules::delete_module,
    ),
    components(schemas(
        ErrorBody,
        JobInput,
        JobView,
        JobPage,
        ScriptView,
        RunView,
        RunDetail,
        RunPage,
        DebugEvent,
        Health,
        Stats,
        ClusterView,
        api::Created,
        api::ScriptInput,
        ScriptVersionView,
        RollbackInput,
        PlanView,
        CatchUpView,
        BackfillView,
        OccurrenceView,
        OccurrencePage,
        ops::Readiness,
        ops::ReadinessCheck,
        ops::ReadinessData,
        SecretInput,
        SecretView,
        KvEntryView,
        audit::AuditEntryView,
        audit::AuditPage,
        ModuleInput,
        ModuleView,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Create, change, start and stop jobs"),
        (name = "scripts", description = "Job scripts and the debug socket"),
        (name = "runs", description = "Run history"),
        (name = "service", description = "Health, readiness, metrics and this document"),
        (name = "secrets", description = "Secrets granted to jobs (values never returned)"),
        (name = "audit", description = "Who changed which job, script or secret, and what changed"),
        (name = "modules", description = "Shared JavaScript modules that scripts load by name"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc
    })
}
