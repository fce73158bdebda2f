"""What users read: result files (outputs), plots, and the progress of a running study."""

from tuner.reporting.outputs import (
    best_config_yaml,
    best_so_far,
    best_trial,
    params2str,
    parse_recbole_output,
    recbole_output,
    state_counts,
    summary_table,
    write_results_csv,
    write_text,
)

__all__ = ["best_config_yaml", "best_so_far", "best_trial", "params2str", "parse_recbole_output",
           "recbole_output", "state_counts", "summary_table", "write_results_csv", "write_text"]
