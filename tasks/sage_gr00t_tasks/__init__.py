"""SAGE-GR00T's own tabletop tasks, one module each (`pick_apple`, `sort_blocks`, `pour_water`).

Each module declares one `sage_gr00t.tasks.Task`; pyproject.toml lists them under the
`sage_gr00t.tasks` entry-point group, which is how the core finds them (and a user's own task
package, the same way). `sage_gr00t_tasks.isaaclab` is the `isaaclab.tasks` entry point.
"""
