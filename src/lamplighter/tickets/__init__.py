"""Request journal: every request of the SRE team is a ticket; the data says what to automate next."""
