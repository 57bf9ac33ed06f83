"""DAGs from YAML to a validated, compiled plan: spec, graph, compile, plan, payload, params.

Pure but for :func:`load_dag` reading its file. ``from dagflow.dag import Dag, load_dag``
keeps working: the loader's names are re-exported here.
"""

from dagflow.dag.load import Dag, check_dag, dag_from_data, load_dag, plan_text

__all__ = ["Dag", "check_dag", "dag_from_data", "load_dag", "plan_text"]
