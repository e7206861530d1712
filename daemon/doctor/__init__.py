"""`dictated doctor`: is everything the daemon needs in place, and if not, what to do about it.

Each check is a small function over one `DoctorContext` returning `CheckResult`s (checks.py runs
them in order); the CLI (doctor/cli.py) prints them and maps a failure to a non-zero exit.
Checks never raise: a broken part is a result, so one problem does not hide the others.
"""
