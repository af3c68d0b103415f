-- Daily statements and reconciliation read the ledger by booking day and clinic.
CREATE INDEX ledger_by_day ON ledger_entries (booked_on, clinic_id);
