//! `routerctl plugin ...`: scaffolding a plugin project, loading one (or a dry run of it, or a
//! shadow or canary version beside the live one), promoting or discarding that trial version,
//! listing, showing and unloading.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;
use ureq::http::Method;

use super::cli::{LoadArgs, PluginCommand};
use super::client::{Body, encode};
use super::{Ctl, plugin_path, render, scaffold};

impl Ctl {
    /// Runs one `plugin` command; the text to print.
    pub(crate) fn plugin(&self, cmd: PluginCommand) -> Result<String> {
        match cmd {
            PluginCommand::New { name, lang, dir } => {
                let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
                let written = scaffold::write(&name, lang, &dir)?;
                Ok(format!(
                    "wrote {} files to {}; build with: bash {}/build.sh\n",
                    written.len(),
                    dir.display(),
                    dir.display()
                ))
            }
            PluginCommand::Load(args) => self.load(args),
            PluginCommand::List => {
                let doc = self.client.get("/api/v1/plugins")?;
                Ok(self.show(&doc, |d| {
                    let plugins = d.get("plugins").and_then(Value::as_array);
                    render::plugins_table(plugins.map_or(&[][..], Vec::as_slice))
                }))
            }
            PluginCommand::Info { name } => {
                let plugin = self.client.get(&plugin_path(&name))?;
                Ok(self.show(&plugin, |p| {
                    // The trial version gets its own section.
                    let mut live = p.clone();
                    if let Some(fields) = live.as_object_mut() {
                        fields.remove("trial");
                    }
                    let mut out = render::details(&live, render::PLUGIN_ORDER);
                    out.push_str(&render::trial(p));
                    out
                }))
            }
            PluginCommand::Promote { name } => {
                let path = format!("{}/promote", plugin_path(&name));
                let plugin = self.client.call(Method::POST, &path, None, None)?;
                Ok(self.done(plugin.as_ref(), |_| {
                    format!("promoted the trial version of plugin {name}: it is the live one now")
                }))
            }
            PluginCommand::Discard { name } => {
                let path = format!("{}/discard", plugin_path(&name));
                let answer = self.client.call(Method::POST, &path, None, None)?;
                Ok(self.done(answer.as_ref(), |_| {
                    format!("discarded the trial version of plugin {name}")
                }))
            }
            PluginCommand::Unload { name, force } => {
                let mut path = self.changing(&plugin_path(&name));
                if force {
                    path.push_str(if self.dry_run {
                        "&force=true"
                    } else {
                        "?force=true"
                    });
                }
                let answer = self.client.call(Method::DELETE, &path, None, None)?;
                Ok(self.done(answer.as_ref(), |_| format!("unloaded plugin {name}")))
            }
        }
    }

    /// `plugin load`: an upload, a dry run of one, or a trial version beside the live one.
    fn load(&self, args: LoadArgs) -> Result<String> {
        let LoadArgs {
            file,
            name,
            shadow,
            budget,
            canary,
            sticky,
            margin,
        } = args;
        let name = match name {
            Some(name) => name,
            None => file
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .with_context(|| {
                    format!("cannot name a plugin after {}; pass --name", file.display())
                })?,
        };
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let body = Body {
            content_type: "application/wasm",
            bytes: &bytes,
        };
        let mut path = format!("/api/v1/plugins?name={}", encode(&name));
        if self.dry_run {
            path.push_str("&dry_run=true");
        }
        if shadow {
            path.push_str("&shadow=true");
            if let Some(b) = budget {
                path.push_str(&format!("&budget={b}"));
            }
        }
        let trial = match &canary {
            Some(share) => {
                path.push_str(&format!("&canary={}", encode(share)));
                if let Some(s) = &sticky {
                    path.push_str(&format!("&sticky={}", encode(s)));
                }
                if let Some(m) = margin {
                    path.push_str(&format!("&margin={m}"));
                }
                Some(format!("a canary at {share}"))
            }
            None => shadow.then(|| "a shadow".to_owned()),
        };
        let plugin = self.client.call(Method::POST, &path, Some(body), None)?;
        if let Some(what) = trial {
            return Ok(self.done(plugin.as_ref(), |_| {
                format!("loaded {what} of plugin {name}; see it with: routerctl plugin info {name}")
            }));
        }
        Ok(self.done(plugin.as_ref(), |p| {
            let Some(p) = p else {
                return format!("loaded plugin {name}");
            };
            let sha: String = render::text(p.get("sha256")).chars().take(12).collect();
            format!(
                "loaded plugin {name}: {}, sha256 {sha}, {}",
                render::text(p.get("kind")),
                render::size(p.get("size"))
            )
        }))
    }
}
