"""The contract: what a task is and what an answer must be (tasks, validators, prompts, results, decisions, the
calibration profile type). Imports only the foundation (errors, locations)."""
