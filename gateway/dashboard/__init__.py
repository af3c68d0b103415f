"""The finance dashboard: a server-rendered page for finance desks, behind a short-lived login link."""
