//! The connect dialog: server, user, password; trust the certificate on first contact.

use super::super::net::Secret;
use super::super::{Command, ConnState, Settings, ViewCtx};

/// State of the connect dialog.
#[derive(Debug, Default)]
pub struct ConnectView {
    url: String,
    username: String,
    password: String,
    /// Why the last attempt failed, in words.
    pub error: Option<String>,
}

impl ConnectView {
    /// A dialog pre-filled from the remembered settings.
    pub fn new(settings: &Settings) -> Self {
        ConnectView {
            url: settings.recent_servers.first().cloned().unwrap_or_default(),
            username: if settings.last_username.is_empty() {
                "admin".into()
            } else {
                settings.last_username.clone()
            },
            ..Default::default()
        }
    }

    /// Overrides the server and user fields.
    pub fn prefill(&mut self, url: Option<String>, username: Option<String>) {
        if let Some(u) = url {
            self.url = u;
        }
        if let Some(u) = username {
            self.username = u;
        }
    }

    /// Forgets the typed password (after a successful login).
    pub fn clear_password(&mut self) {
        self.password.clear();
    }

    /// Draws the dialog for the current connection state.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        state: &ConnState,
        settings: &Settings,
        cx: &mut ViewCtx<'_>,
    ) {
        ui.vertical_centered(|ui| {
            ui.add_space(ui.available_height() * 0.12);
            ui.heading("Strata");
            ui.label("Connect to a Strata manager, or straight to one host agent");
            ui.add_space(12.0);
        });
        let width = 460.0;
        ui.vertical_centered(|ui| {
            egui::Frame::group(ui.style())
                .inner_margin(16.0)
                .show(ui, |ui| {
                    ui.set_width(width);
                    ui.with_layout(
                        egui::Layout::top_down(egui::Align::LEFT),
                        |ui| match state {
                            ConnState::AwaitingTrust { url, thumbprint } => {
                                trust_prompt(ui, url, thumbprint, cx)
                            }
                            _ => self.form(ui, state, settings, cx),
                        },
                    );
                });
        });
    }

    fn form(
        &mut self,
        ui: &mut egui::Ui,
        state: &ConnState,
        settings: &Settings,
        cx: &mut ViewCtx<'_>,
    ) {
        let busy = matches!(
            state,
            ConnState::FetchingCertificate | ConnState::Connecting
        );
        let mut submit = false;
        egui::Grid::new("connect_form")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                let l = ui.label("Server");
                ui.add_enabled(
                    !busy,
                    egui::TextEdit::singleline(&mut self.url)
                        .hint_text("HOST[:PORT] (manager 8443, host agent 9443)")
                        .desired_width(300.0),
                )
                .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("User name");
                ui.add_enabled(
                    !busy,
                    egui::TextEdit::singleline(&mut self.username).desired_width(300.0),
                )
                .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Password");
                let r = ui
                    .add_enabled(
                        !busy,
                        egui::TextEdit::singleline(&mut self.password)
                            .password(true)
                            .desired_width(300.0),
                    )
                    .labelled_by(l.id);
                if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    submit = true;
                }
                ui.end_row();
            });
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!busy, egui::Button::new("Connect"))
                .clicked()
            {
                submit = true;
            }
            match state {
                ConnState::FetchingCertificate => {
                    ui.spinner();
                    ui.label("Fetching the server's certificate…");
                }
                ConnState::Connecting => {
                    ui.spinner();
                    ui.label("Logging in…");
                }
                _ => {}
            }
        });
        if let Some(e) = &self.error {
            ui.add_space(6.0);
            ui.colored_label(super::super::theme::ERROR, e);
        }
        if submit && !busy {
            cx.commands.send(Command::Connect {
                url: self.url.trim().to_string(),
                username: self.username.trim().to_string(),
                password: Secret(self.password.clone()),
            });
        }
        if !settings.recent_servers.is_empty() {
            ui.add_space(10.0);
            ui.separator();
            ui.label("Recent servers");
            for s in &settings.recent_servers {
                ui.horizontal(|ui| {
                    if ui.link(s).clicked() {
                        self.url = s.clone();
                    }
                    let key = Settings::server_key(s);
                    if let Some(tp) = key.as_ref().and_then(|k| settings.trusted.get(k)) {
                        ui.weak(short_thumbprint(tp)).on_hover_text(tp);
                        if ui
                            .small_button("Forget certificate")
                            .on_hover_text("Ask to trust this server's certificate again")
                            .clicked()
                        {
                            if let Some(k) = key {
                                cx.commands.send(Command::ForgetServer(k));
                            }
                        }
                    }
                });
            }
        }
    }
}

fn short_thumbprint(tp: &str) -> String {
    let s: String = tp.chars().take(23).collect();
    format!("{s}…")
}

fn trust_prompt(ui: &mut egui::Ui, url: &str, thumbprint: &str, cx: &mut ViewCtx<'_>) {
    ui.strong("Trust this server's certificate?");
    ui.add_space(6.0);
    ui.label(format!(
        "This is the first connection to {url}. It presented a certificate with this \
         SHA-256 thumbprint:"
    ));
    ui.add_space(4.0);
    ui.add(egui::Label::new(egui::RichText::new(thumbprint).monospace()).wrap());
    ui.add_space(4.0);
    ui.label(
        "Compare it with the thumbprint the server printed when it started. Once trusted it \
         is remembered, and a different certificate will be refused.",
    );
    ui.add_space(8.0);
    ui.horizontal(|ui| {
        if ui.button("Trust and connect").clicked() {
            cx.commands.send(Command::TrustAndConnect);
        }
        if ui.button("Cancel").clicked() {
            cx.commands.send(Command::CancelTrust);
        }
    });
}
