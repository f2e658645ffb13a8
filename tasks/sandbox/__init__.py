"""What keeps one job from reaching another, the service or the network it should not.

Guarantees, each tested (docs/security.md says where):

- `scripts` + `script_host` + `linux`: an uploaded `custom` script runs in a child process
  with its own mount, PID, IPC and network namespaces, its own uid (or a user namespace), no
  capabilities and a seccomp filter; it sees its job's scratch folder as the only writable
  place, nothing of other jobs, the storage, Ray or home folders; CPU, memory, file, disk and
  process limits hold; nothing it starts outlives it.
- `landlock`: the child process that runs native readers (OCCT, OpenUSD, ufbx) may open files
  in its job's folder, the Python installation and system libraries only (Linux 5.13+).
- `scratch`: every job works in a folder of its own that is removed when the job ends,
  however it ends (a killed worker's folder is swept on its node).
- `egress`: URLs users give (callbacks) reach public addresses only, plus the networks the
  operator allows.

Nothing here imports Ray or the geometry libraries: the API and the settings use `egress`.
"""
