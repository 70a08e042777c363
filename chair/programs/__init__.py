"""Massage programs: the files' model, the plan a session follows, and their static verification.

- `chair.programs.model` — the program file (TOML) as pydantic models, the built-in programs
  (`profiles/`, installed as `chair.profiles`), loading and the JSON Schema.
- `chair.programs.plan` — `build_plan`: a program, a body and the user's choices → an exact
  timeline of core commands (the same timeline at every intensity and heat).
- `chair.programs.validate` — `chair validate`: schema and safety rules for every body height,
  intensity and length.

See docs/programs.md.
"""
