#!/usr/bin/env bash
# A comparison through a real Slurm scheduler on this one machine: `asc compare --slurm`, `sbatch`
# with one task held back, `asc sweep collect` (which must name it), the resubmission it prints,
# and `collect` again (which must find every run). CI checks the same script contract without
# Slurm (tests/cli_deploy.rs runs the array's tasks with bash); this is the check against the
# scheduler itself.
#
#   scripts/slurm_check.sh [--setup] [ASC_BINARY]
#
# --setup (root, Debian/Ubuntu): installs slurmd, slurmctld and munge, writes a one-node
# /etc/slurm/slurm.conf (partition `debug`, all of this machine's cores) and starts the daemons.
# Without it, a running Slurm is used as it is.
set -euo pipefail
if [ "${1:-}" = "--setup" ]; then
  shift
  DEBIAN_FRONTEND=noninteractive apt-get install -y slurmd slurmctld slurm-client munge >/dev/null
  host=$(hostname)
  mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmUser=root
ReturnToService=2
NodeName=$host CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  chown munge:munge /run/munge
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  sleep 3
fi
ASC=$(realpath "${1:-target/release/asc}")
work=$(mktemp -d /tmp/asc-slurm.XXXXXX)
"$ASC" synth --out "$work/data" --clips-per-class 6 --seconds 2 >/dev/null
"$ASC" compare --data "$work/data" --model cnn --norms bn,l2bn --seeds 2 --epochs 2 \
  --batch-size 8 --preset librosa --out "$work/sweep" --slurm --slurm-cpus 1 --slurm-time 00:10:00
wait_for() { while [ -n "$(squeue -h -j "$1")" ]; do sleep 2; done; }
job=$(sbatch --parsable --array=0,1,3 "$work/sweep/sweep.sbatch")
echo "submitted job $job (tasks 0, 1, 3)"
wait_for "$job"
sacct -j "$job" --format=JobID,State,ExitCode,Elapsed 2>/dev/null || true  # when accounting is on
set +e
"$ASC" sweep collect --dir "$work/sweep" | tail -3
status=$?
set -e
resubmit=$( ("$ASC" sweep collect --dir "$work/sweep" || true) | sed -n "s/^resubmit them: //p")
[ "$resubmit" = "sbatch --array=2 $work/sweep/sweep.sbatch" ] || { echo "unexpected: $resubmit"; exit 1; }
job=$(${resubmit/sbatch/sbatch --parsable})
echo "resubmitted task 2 as job $job"
wait_for "$job"
"$ASC" sweep collect --dir "$work/sweep"
ls "$work/sweep/logs"
echo "slurm_check: ok ($work)"
