"""The Textual studio: app, screens, widgets. No ML logic here."""
