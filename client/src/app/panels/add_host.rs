//! The Add Host dialog: the agent's address, its administrator and password, and an
//! optional cluster. Before `host.add` is sent, the host's certificate thumbprint is fetched
//! (`fetch_thumbprint` on the network side) and shown, and the user must confirm it; the
//! thumbprint sent is the one confirmed, so the manager pins exactly what was checked.

use strata_shared::client::{parse_address, AGENT_PORT};
use uuid::Uuid;

use super::super::model::InventoryModel;
use super::super::net::{Action, Secret};
use super::form::{self, Buttons};
use crate::app::dialogs::DialogAction;

/// Why the dialog cannot be sent, per field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddHostErrors {
    /// Next to the address.
    pub address: Option<String>,
    /// Next to the user.
    pub username: Option<String>,
    /// Next to the password.
    pub password: Option<String>,
    /// Next to the certificate (not fetched, not for this address, not confirmed).
    pub certificate: Option<String>,
}

/// The open dialog.
#[derive(Debug, Clone)]
pub struct AddHostDialog {
    /// Datacenter (for the cluster list).
    pub datacenter: Option<Uuid>,
    /// `HOST[:PORT]`, as typed.
    pub address: String,
    /// The agent's administrator.
    pub username: String,
    /// Its password.
    pub password: Secret,
    /// Cluster to join; none = standalone.
    pub cluster: Option<Uuid>,
    /// The thumbprint fetched, for which `HOST:PORT`.
    pub thumbprint: Option<(String, String)>,
    /// Token of the thumbprint fetch under way.
    pub fetching: Option<u64>,
    /// Why the fetch failed, in words.
    pub fetch_error: Option<String>,
    /// The user confirmed the thumbprint shown.
    pub confirmed: bool,
    /// The server's refusal of the last OK, in words.
    pub server_error: Option<String>,
    /// Token of the request sent and not yet answered.
    pub pending: Option<u64>,
}

impl AddHostDialog {
    /// A blank dialog (cluster preset when opened on one).
    pub fn open(datacenter: Option<Uuid>, cluster: Option<Uuid>) -> Self {
        AddHostDialog {
            datacenter,
            address: String::new(),
            username: "root".into(),
            password: Secret::default(),
            cluster,
            thumbprint: None,
            fetching: None,
            fetch_error: None,
            confirmed: false,
            server_error: None,
            pending: None,
        }
    }

    /// The address as `HOST:PORT`, or why it is not one.
    pub fn normalized(&self) -> Result<String, String> {
        let a = self.address.trim();
        if a.is_empty() {
            return Err("Enter the host agent's address (HOST or HOST:PORT)".into());
        }
        parse_address(a, AGENT_PORT)
            .map(|(_, hostport)| hostport)
            .map_err(|_| format!("{a:?} is not an address: use HOST or HOST:PORT"))
    }

    /// The thumbprint fetched for the address as it is now.
    pub fn current_thumbprint(&self) -> Option<&str> {
        let addr = self.normalized().ok()?;
        self.thumbprint
            .as_ref()
            .filter(|(a, _)| *a == addr)
            .map(|(_, t)| t.as_str())
    }

    /// A thumbprint arrived (or did not).
    pub fn thumbprint_fetched(&mut self, token: u64, result: Result<String, String>) {
        if self.fetching != Some(token) {
            return;
        }
        self.fetching = None;
        self.confirmed = false;
        match (result, self.normalized()) {
            (Ok(t), Ok(addr)) => {
                self.thumbprint = Some((addr, t));
                self.fetch_error = None;
            }
            (Err(e), _) => {
                self.thumbprint = None;
                self.fetch_error = Some(e);
            }
            (Ok(_), Err(e)) => self.fetch_error = Some(e),
        }
    }

    /// Runs every check; `Ok` carries the action OK sends.
    pub fn check(&self, inv: &InventoryModel) -> Result<Action, AddHostErrors> {
        let mut e = AddHostErrors::default();
        let address = match self.normalized() {
            Ok(a) => {
                if let Some(h) = inv.hosts.values().find(|h| h.address == a) {
                    e.address = Some(format!("Host {} ({a}) is already in the inventory", h.name));
                }
                Some(a)
            }
            Err(m) => {
                e.address = Some(m);
                None
            }
        };
        if self.username.trim().is_empty() {
            e.username = Some("Enter the host's administrator (normally root)".into());
        }
        if self.password.0.is_empty() {
            e.password = Some("Enter the administrator's password".into());
        }
        let thumbprint = self.current_thumbprint();
        if e.address.is_none() {
            e.certificate = match (thumbprint, self.confirmed) {
                (None, _) => Some("Get the host's certificate and check its thumbprint".into()),
                (Some(_), false) => Some("Confirm that the thumbprint is the host's".into()),
                (Some(_), true) => None,
            };
        }
        match (address, thumbprint, e == AddHostErrors::default()) {
            (Some(address), Some(t), true) => Ok(Action::AddHost {
                address,
                username: self.username.trim().to_string(),
                password: self.password.clone(),
                thumbprint: t.to_string(),
                cluster: self.cluster,
            }),
            _ => Err(e),
        }
    }

    /// Draws the window; returns what the user decided this frame.
    pub fn show(&mut self, ctx: &egui::Context, inv: &InventoryModel) -> Option<DialogAction> {
        let mut action = None;
        let checked = self.check(inv);
        let errors = checked.clone().err().unwrap_or_default();
        form::dialog(ctx, "Add Host", "add_host_dialog", 780.0, |ui| {
            let address_before = self.address.clone();
            form::grid("add_host_grid", ui, |ui| {
                form::text_row(
                    ui,
                    "Address",
                    &mut self.address,
                    240.0,
                    true,
                    errors.address.as_deref(),
                );
                form::text_row(
                    ui,
                    "User",
                    &mut self.username,
                    140.0,
                    true,
                    errors.username.as_deref(),
                );
                let l = ui.label("Password");
                ui.add(
                    egui::TextEdit::singleline(&mut self.password.0)
                        .password(true)
                        .desired_width(200.0)
                        .min_size(egui::vec2(200.0, 0.0)),
                )
                .labelled_by(l.id);
                form::error_text(ui, errors.password.as_deref());
                ui.end_row();
                let l = ui.label("Cluster");
                let name = |c: Option<Uuid>| {
                    c.and_then(|c| inv.clusters.get(&c))
                        .map(|c| c.name.clone())
                        .unwrap_or_else(|| "None (standalone host)".into())
                };
                egui::ComboBox::from_id_salt("add_host_cluster")
                    .selected_text(name(self.cluster))
                    .width(240.0)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.cluster, None, name(None));
                        let clusters: Vec<_> = match self.datacenter {
                            Some(d) => inv.clusters_in(d),
                            None => inv.clusters.values().collect(),
                        };
                        for c in clusters {
                            ui.selectable_value(&mut self.cluster, Some(c.id), &c.name);
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.label("");
                ui.end_row();
            });
            if self.address != address_before {
                self.confirmed = false;
                self.fetch_error = None;
            }
            form::section(ui, "Certificate");
            self.certificate_section(ui, &errors, &mut action);
            form::server_error(ui, self.server_error.as_deref());
            match form::ok_cancel(
                ui,
                "Add Host",
                checked.is_ok(),
                errors
                    .certificate
                    .as_deref()
                    .filter(|_| {
                        errors.address.is_none()
                            && errors.username.is_none()
                            && errors.password.is_none()
                    })
                    .unwrap_or("Correct the fields marked in red first"),
                self.pending.is_some(),
            ) {
                Buttons::Ok => {
                    if let Ok(a) = checked {
                        let label = match &a {
                            Action::AddHost { address, .. } => format!("Add host {address}"),
                            _ => "Add host".into(),
                        };
                        action = Some(DialogAction::Submit {
                            action: Box::new(a),
                            label,
                            target: None,
                        });
                    }
                }
                Buttons::Cancel => action = Some(DialogAction::Cancel),
                Buttons::None => {}
            }
        });
        action
    }

    fn certificate_section(
        &mut self,
        ui: &mut egui::Ui,
        errors: &AddHostErrors,
        action: &mut Option<DialogAction>,
    ) {
        let address = self.normalized();
        ui.horizontal(|ui| {
            let can = address.is_ok() && self.fetching.is_none();
            let verb = if self.current_thumbprint().is_some() {
                "Get Certificate Again"
            } else {
                "Get Certificate"
            };
            if ui
                .add_enabled(can, egui::Button::new(verb))
                .on_disabled_hover_text("Enter the host's address first")
                .clicked()
            {
                if let Ok(a) = &address {
                    *action = Some(DialogAction::FetchThumbprint(a.clone()));
                }
            }
            if self.fetching.is_some() {
                ui.spinner();
                ui.label("Connecting to the host…");
            }
        });
        if let Some(e) = &self.fetch_error {
            ui.colored_label(
                super::super::theme::ERROR,
                format!("Cannot get the certificate: {e}"),
            );
        }
        if let (Some(t), Ok(a)) = (self.current_thumbprint().map(str::to_string), &address) {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!(
                    "{a} presents a certificate with the SHA-256 thumbprint"
                ));
            });
            ui.add(egui::Label::new(egui::RichText::new(&t).monospace().strong()).wrap());
            ui.weak(
                "The host agent prints its thumbprint when it starts (\"certificate \
                 thumbprint: …\"): compare the two before you trust it.",
            );
            ui.checkbox(
                &mut self.confirmed,
                "I checked this thumbprint on the host and trust it",
            );
        } else if self.fetching.is_none() && self.fetch_error.is_none() {
            ui.weak("The host's certificate is fetched and shown here for you to check.");
        }
        let _ = errors;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{ConnectionState, HostInfo, Inventory};

    #[test]
    fn the_thumbprint_must_be_fetched_for_this_address_and_confirmed() {
        let known = HostInfo {
            id: Uuid::new_v4(),
            name: "esx1".into(),
            address: "10.0.0.1:9443".into(),
            datacenter: Uuid::new_v4(),
            cluster: None,
            thumbprint: String::new(),
            connection_state: ConnectionState::Connected,
            state_reason: None,
            facts: None,
        };
        let inv = InventoryModel::from_snapshot(Inventory {
            hosts: vec![known],
            ..Default::default()
        });
        let mut d = AddHostDialog::open(None, None);
        let e = d.check(&inv).unwrap_err();
        assert!(e.address.is_some() && e.password.is_some());
        d.address = "10.0.0.1".into();
        assert_eq!(
            d.check(&inv).unwrap_err().address.as_deref(),
            Some("Host esx1 (10.0.0.1:9443) is already in the inventory")
        );
        d.address = "10.0.0.2".into();
        d.password = Secret("pw".into());
        assert!(d.check(&inv).unwrap_err().certificate.is_some());
        d.fetching = Some(7);
        d.thumbprint_fetched(7, Ok("AA:BB".into()));
        assert_eq!(d.current_thumbprint(), Some("AA:BB"));
        assert_eq!(
            d.check(&inv).unwrap_err().certificate.as_deref(),
            Some("Confirm that the thumbprint is the host's")
        );
        d.confirmed = true;
        match d.check(&inv) {
            Ok(Action::AddHost {
                address,
                thumbprint,
                ..
            }) => assert_eq!(
                (address.as_str(), thumbprint.as_str()),
                ("10.0.0.2:9443", "AA:BB")
            ),
            other => panic!("{other:?}"),
        }
        // Another address: the thumbprint no longer counts.
        d.address = "10.0.0.3:9443".into();
        assert!(d.current_thumbprint().is_none());
        assert!(d.check(&inv).is_err());
    }
}
