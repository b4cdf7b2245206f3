"""Benchmark helpers for the `sage-bench` commands (and `sage-eval`'s video): one place for the parts several
benchmarks share.

    process         pin to one CPU core, one thread per native library, the offline Menagerie copy
    tables          rich tables with label columns left and number columns right
    stats           the exact McNemar test of paired success / failure outcomes
    faults          fault schedules: which camera faults strike at which task phase, and for how long
    faulted_episode one sort_blocks episode through the SAGE bridge with a fault switched on mid-way
    video           front view + ego-camera inset frames of an episode, written as mp4

Every module but `faulted_episode` imports numpy, torch and mujoco inside its functions only: a benchmark pins
its core before those libraries start their threads, and it imports these modules before that.
"""
