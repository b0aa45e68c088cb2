"""Load a profiler run the way TensorBoard's PyTorch Profiler plugin does; print its workers and views.

Run as a script (the plugin's loader uses spawned processes, which need a __main__ guard).
"""
import sys


def main(run_dir: str) -> None:
    from torch_tb_profiler import io
    from torch_tb_profiler.profiler.loader import RunLoader

    run = RunLoader("reprobench", run_dir, io.Cache()).load()
    for profile in run.profiles.values():
        print(profile.worker, ",".join(view.name for view in profile.views))


if __name__ == "__main__":
    main(sys.argv[1])
