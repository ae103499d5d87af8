"""The built-in failure rules, in the order they are tried (docs/failure-reasons.md).

The order encodes the rubric's tie-breaks: a person or orchestrator stopping the run beats
everything; a task's own time limit beats the network errors it interrupted; platform failures
beat the exceptions they cause; quality gates and schema problems beat the generic exception
types they are raised as; exit codes alone come last. Each rule is one line of data, so a new
signal is a new row, never a new branch of code.
"""

from __future__ import annotations

import re

from orchestrack.record import FailureReason as R
from orchestrack.rules import Rule


def rx(pattern: str) -> re.Pattern[str]:
    """A case-insensitive, multi-line pattern."""
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


_METRIC_NAME = (r"(?:auc|roc[ _-]?auc|pr[ _-]?auc|accuracy|acc|f1(?:[ _-]?score)?|precision|recall|rmse|mse|mae|mape"
                r"|smape|r2|r\^2|ndcg|map|bleu|rouge\w*|perplexity|log[ _-]?loss|logloss|score|metric|wer|cer|iou"
                r"|dice|loss|error rate)")
# "auc", "val_auc", "test accuracy", "ndcg@5", "ndcg_5", "eval_f1"
_METRIC = rf"(?:(?:val(?:idation)?|test|eval|holdout|oot)[ _-]?)?{_METRIC_NAME}(?:[@_ -]?\d+)?"

BUILTIN_RULES: tuple[Rule, ...] = (
    # -- a person or the orchestrator stopped it ------------------------------------------------
    # Airflow's dagrun_timeout sets the tasks still running to skipped; a person marks failed or success.
    Rule(R.TIMEOUT, "dagrun-timeout", "was stopped when its DAG run timed out", pattern=rx(
        r"externally set to skipped|dag ?run(?: \S+)? (?:has )?timed out|\bmsg[=: ]+['\"]?timed_out")),
    Rule(R.CANCELLED, "manual", "was stopped by hand", pattern=rx(
        r"state was manually set to|(?:has been|was) externally set to|marked (?:as )?(?:failed|success|skipped)"
        r" (?:by|manually|from the ui)|set (?:the )?state (?:of .* )?to failed (?:by|manually)|cleared by")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"\b(?:flow|task|job|pipeline|workflow|dag)? ?run (?:was |has been |is being )?(?:cancell?ed|aborted by"
        r" (?:the )?user|terminated by (?:the )?user)|\bcancell?ed by (?:the )?user|cancellation requested"
        r"|\bstate(?: name)?[=: ]+['\"]?(?:cancell?ed|cancelling)\b|\bCancell?ed\(|runner is shutting down"
        r"|(?:stopped|shutdown|shut down) with strategy|\b(?:run|workflow) (?:was )?(?:terminated|stopped)\b(?! unexpectedly)"
        r"|(?<!either )caused by (?:a )?manual cancellation|(?:marking|marked|setting|set) (?:\S+ ){0,3}(?:as|to) cancell?ed"
        r"|user (?:requested|initiated) (?:cancel|stop|termination)|\bjob was (?:cancelled|killed) by\b|Asked to cancel"
        r"|kill request|\b(?:task|run|job|eval|evaluation) (?:was )?interrupted|interrupted by (?:the )?user"
        r"|requested (?:a )?cancel+ation|cancel+ation (?:event|request)|received (?:a )?cancel"
        r"|cancel+ed (?:by|on) (?:the )?(?:client|user|request|user'?s request|operator|admin)|on user'?s request"
        r"|execution was aborted by an interrupt signal|\bscancel\b|killed by user"),
         unless=rx(r"fail(?:ed)? or (?:has been |was )?cancel|cancell?ed or fail|cancellation or|time limit"
                   r"|due to (?:task |upstream |a )?fail|timeout|timed[ _]out")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"\bThe operation was cancel+ed\b|\bAbortError: The user aborted|\bInterruptException\b|Query execution was interrupted"
        r"|\bBuild was aborted\b|(?-i:\bAborted by (?!a |an |the |signal|termination)\S+)|\brevoked\b.{0,60}\bterminat|raised unexpected: Terminated\(|\bTaskRevokedError\b"
        r"|expected if the job was cancell?ed|\bsystemd\[\d+\]: Stopping\b|\bStatus: 499\b|client closed request"),
         unless=rx(r"time ?limit|timeout|timed[ _]out|max_statement_time|max_execution_time|shutdown signal|preempt|\bspot\b"
                   r"|Connection lost|server closed the connection")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"canceling statement due to user request|cancell?ed (?:on|due to) user request|\bon user request\b"
        r"|completed as cancell?ed|\bFinished: ABORTED\b|\bdeleted by (?:the )?user\b|\"?result\"?\W{0,4}cancell?ed\b"
        r"|pipeline was cancell?ed due to"), unless=rx(r"statement timeout|time ?limit|ran longer than|maximum time")),
    Rule(R.CANCELLED, "stopped", "was stopped on purpose", pattern=rx(
        r"\bJob killed by (?!oom|the oom|signal|kernel)\w+|PrimaryStatus: Stopped|\bcontext canceled\b|\bError: interrupt\s*$"
        r"|scheduling shutdown|received smart shutdown|shutdown initiated by request|Gracefully stopping|jobs? SIGHUPed"),
         unless=rx(r"preempt|\bspot\b|deadline|timed? ?out|out of memory|OOM")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"query execution cancell?ed|user-initiated termination|instance-terminated-by-user|cancellation token"
        r"|\bcancell?ed \d{4}-\d{2}-\d{2}T"), unless=rx(r"time ?limit|timeout|timed[ _]out|preempt")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", types=("APIUserAbortError", "TaskRevokedError")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"\bTaskRunCancelled\b|\bPipelineRunCancelled\b|Tasks flagged as revoked|\brevoke\(|Request was aborted"
        r"|\bAborted request\b|^Exception: \"?CancelledError\(")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"Terminated from the (?:Web )?UI|Discarding revoked task|\bTerminating [0-9a-f-]{36} \(15\)")),
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(r"\buser_cancell?ed\b|\bcancell?ed_by_user\b")),
    Rule(R.CANCELLED, "interrupted", "was interrupted", types=("KeyboardInterrupt",)),
    Rule(R.CANCELLED, "interrupted", "was interrupted", pattern=rx(
        r"\bKeyboardInterrupt\b|keyboard interrupt|\^C|closing signal SIGINT|Received 2 death signal|\bSIGINT\b"
        r"|\[CANCEL\]|\bCANCEL query\b")),
    Rule(R.CANCELLED, "interrupted", "was interrupted (SIGINT)", exit_codes=(130, -2)),

    # -- its own time limit -----------------------------------------------------------------------
    Rule(R.INFRA_ERROR, "network", "timed out talking to a service", pattern=rx(
        r"Timeout was reached:|Resolving timed out after|Connection timed out after \d+ milli"
        r"|Operation timed out after \d+ milliseconds with \d+|download\.file\(.*(?:\n.*){0,3}Timeout of \d+ seconds was reached")),
    Rule(R.INFRA_ERROR, "quota", "ran into a platform quota", pattern=rx(
        r"exceeded limit for bytes billed|Resources exceeded during query|quota (?:exceeded|exhausted)|exceeded (?:your|the) quota"
        r"|exceeded your current quota|insufficient_quota")),
    # An acceptance report that says FAIL is a quality gate, whatever else its lines say.
    Rule(R.METRIC_REGRESSION, "gate", "was rejected by a quality gate", pattern=rx(r"Acceptance status:\W{0,3}FAIL")),
    # A component that did not write an output it declared (KFP/Argo): its own code's doing.
    Rule(R.CODE_ERROR, "missing-output", "did not write an output it declares", pattern=rx(
        r"failed to save outputs: path \S+ does not exist")),
    # A job spec the platform refuses, or a library the job itself ships that is missing: its own code.
    Rule(R.CODE_ERROR, "invalid-spec", "was defined with a value the platform refuses", pattern=rx(
        r"Invalid value: \S+: must be")),
    Rule(R.CODE_ERROR, "missing-package", "is missing a package its code needs", pattern=rx(
        r"Library installation failed for library jar|FileNotFoundException: \S+\.jar")),
    Rule(R.TIMEOUT, "sensor", "waited past its sensor timeout", types=("AirflowSensorTimeout",)),
    Rule(R.TIMEOUT, "sensor", "waited past its sensor timeout", pattern=rx(r"sensor (?:has )?timed out|AirflowSensorTimeout")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit",
         types=("AirflowTaskTimeout", "TaskRunTimeoutError", "FlowRunTimeoutError")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"\b(?:Timeout|timed out), PID: \d+|AirflowTaskTimeout|TaskRunTimeoutError|FlowRunTimeoutError|execution_timeout"
        r"|exceeded (?:its |the )?timeout of \d+|run exceeded timeout|exceeded (?:its |the )?(?:running |run |wall ?)?time ?limit"
        r"|\bTimedOut\b|state(?: name)?[=: ]+['\"]?timed ?out|run failed due to timeout|task timed out after"
        r"|timeout_seconds|dagrun_timeout|\bmsg[=: ]+['\"]?timed_out|dag ?run timed out|exceeded (?:the )?max"
        r"(?:imum)? (?:execution|run) ?time|max(?:imum)? (?:duration|runtime|run ?time)(?: limit)? (?:exceeded|reached)|time ?limit (?:exceeded|reached)"
        r"|\bDUE TO TIME LIMIT\b|job exceeded (?:its )?(?:time|walltime)|walltime exceeded|ran longer than the maximum"
        r"|longer than the maximum (?:time|duration|run)|exceeded the maximum (?:execution )?(?:time|duration|run ?time)"
        r"|(?:execution|job|step|script) took longer than|took longer than \d+\s?(?:h|m|s|min|hour|minute|second)"
        r"|exceeded (?:the |its )?(?:job|step|script|stage) timeout|(?-i:\b(?:RUN|JOB|TASK|STEP|EXECUTION|PIPELINE)_TIMEOUT\b)"
        r"|(?-i:\bTIMED_?OUT\b)|statement (?:or warehouse )?\W?timeout|statement_timeout|canceling statement due to"
        r"|query (?:timeout|timed out|exceeded)|exceeded (?:the )?max(?:imum)? \w+ time|exceeding (?:the )?timeout"
        r"|timeout value|within the designated timeout|did not complete within|\btimeout of \d[\d,]*(?:\.\d+)? ?(?:s|sec"
        r"|seconds?|second\(s\)|minutes?|min|m|ms|hours?|h)\b|\btimed_out\b|timeout_in_minutes|WorkflowTimeoutError"
        r"|Operation timed out after|Launch timed out|not healthy after \d+|\bBatch expired\b|completion window")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit",
         types=("SoftTimeLimitExceeded", "TimeLimitExceeded", "GetTimeoutError", "JobTimeoutException")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"Build timed out \(after|\bTimeLimitExceeded\b|SoftTimeLimitExceeded|\bGetTimeoutError\b|Get timed out"
        r"|reached (?:elapsed|CPU) time limit|runtime time limit|Result: timeout|with result 'timeout'"
        r"|max_statement_time|max_execution_time exceeded|exceeded maximum timeout|JobTimeoutException|job_execution_timeout"
        r"|hung up for \d+ (?:minutes|seconds)|exceeded the time ?limit|\btime ?limit of \d+")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", types=("RayChannelTimeoutError",)),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"attempt duration exceeded|configured timeout was reached|execution timeout for exceeding"
        r"|Timeout exceeded: elapsed|\bTIMEOUT_EXCEEDED\b|Too long with no output|no_output_timeout"
        r"|Timed out waiting for object|\bstep timeout\b")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", types=("AskTimeoutException",)),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"\bWORKER TIMEOUT\b|has not reached a terminal status after|limite de temps|limite de tiempo|Zeitlimit"
        r"|taking more than \d+ (?:hours?|minutes?|seconds?)|Could not execute broadcast in \d+|broadcastTimeout"
        r"|Ask timed out on|stopTimeout|query time limit")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(r"\bSoft time limit \(\d+")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"did not initialize after waiting for|ApplicationMaster[^\n]*\n?[^\n]*TimeoutException|\bTimed out after \d+ secs"
        r"|exceeded \d+s, terminating|ran longer than\s+the maximum")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"Restart timed out after|Got timeout\(\d+ ?sec")),
    Rule(R.TIMEOUT, "execution-timeout", "ran past its time limit", pattern=rx(
        r"Futures timed out after \[\d+ (?:seconds|milliseconds)\]|^Exception: TimeoutException\("),
         unless=rx(r"heartbeat|RpcTimeout")),
    Rule(R.TIMEOUT, "deadline", "ran past its deadline", pattern=rx(r"request deadline was exceeded")),
    Rule(R.TIMEOUT, "deadline", "ran past its deadline", unless=rx(
        r"context deadline exceeded|(?-i:DEADLINE_EXCEEDED)|DeadlineExceededError|grpc|rpc error"), pattern=rx(
        r"\bDeadlineExceeded\b|activeDeadlineSeconds|active longer than"
        r" (?:the )?specified deadline|longer than the specified deadline|deadline exceeded(?! while)"
        r"|exceeded (?:its |the )?deadline")),
    Rule(R.TIMEOUT, "timeout-command", "ran past its time limit (exit 124)", exit_codes=(124,)),

    # -- the platform failed ----------------------------------------------------------------------
    Rule(R.INFRA_ERROR, "gpu-oom", "ran out of GPU memory", pattern=rx(
        r"CUDA out of memory|OutOfMemoryError: CUDA|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_(?:ALLOC_FAILED|NOT_ENOUGH)"
        r"|cudaErrorMemoryAllocation|out of memory on device|RESOURCE_EXHAUSTED: Out of memory|\bOOM when allocating"
        r"|failed to allocate .* (?:on|from) device|HIP out of memory|XPU out of memory|MPS backend out of memory"
        r"|torch\.OutOfMemoryError|GPU memory (?:is )?(?:full|exhausted)")),
    Rule(R.INFRA_ERROR, "nccl", "lost its distributed communication (NCCL)", pattern=rx(
        r"\bNCCL (?:error|WARN|timeout)|nccl(?:System|Internal|Unhandled(?:Cuda)?|Remote)Error|ncclInvalid"
        r"|Watchdog caught collective operation timeout|collective operation timeout|ProcessGroupNCCL"
        r"|NCCL communicator was aborted|DistNetworkError|DistBackendError|c10d.*(?:timed out|Connection reset)"
        r"|RendezvousTimeoutError|RendezvousClosedError|Gloo.*(?:Connection closed|timed out)")),
    Rule(R.INFRA_ERROR, "gpu-fault", "hit a GPU hardware fault", pattern=rx(
        r"\bXid\b.{0,40}\b\d+|fallen off the bus|uncorrectable ECC|ECC error|double bit ECC|GPU is lost"
        r"|CUDA error: (?:unspecified launch failure|an illegal instruction|uncorrectable ECC)|NVML: (?:GPU|Unknown) Error"
        r"|cudaErrorECCUncorrectable|GPU (?:has )?(?:fallen|become) unavailable|nvidia-smi has failed")),
    Rule(R.INFRA_ERROR, "oom", "was killed for running out of memory", pattern=rx(
        r"\bOOMKilled\b|OOM ?killer|Out of memory: Kill(?:ed)? process|oom-kill|memory cgroup out of memory"
        r"|likely out of memory|Likely (?:due to )?(?:an )?OOM|exceeded (?:its |the )?memory limit|memory limit exceeded"
        r"|Container killed .* (?:for )?exceeding memory limits|std::bad_alloc|Cannot allocate memory|\[Errno 12\]"
        r"|java\.lang\.OutOfMemoryError|unable to allocate .* (?:array|memory)|high memory usage"
        r"|worker .* exceeded (?:\d+% )?memory budget|Worker exceeded \d+% memory budget|KilledWorker")),
    Rule(R.INFRA_ERROR, "oom", "ran out of memory", types=("MemoryError", "ArrayMemoryError", "OutOfMemoryError")),
    Rule(R.INFRA_ERROR, "shm", "ran out of shared memory", pattern=rx(
        r"insufficient shared memory|shared memory \(shm\)|unable to (?:open|write to|allocate) shared memory"
        r"|/dev/shm|shm_open|Bus error")),
    Rule(R.INFRA_ERROR, "resource-limit", "hit an operating-system resource limit", pattern=rx(
        r"Too many open files|\[Errno 24\]|Resource temporarily unavailable|can't start new thread"
        r"|fork: retry|\[Errno 11\]")),
    Rule(R.INFRA_ERROR, "gpu-unavailable", "found no usable GPU", pattern=rx(
        r"no CUDA GPUs are available|Found no NVIDIA driver|CUDA driver version is insufficient|NVIDIA driver on your"
        r" system is too old|cudaGetDeviceCount|CUDA_ERROR_NO_DEVICE|no CUDA-capable device|Torch not compiled with"
        r" CUDA|could not load dynamic library 'libcuda|libcuda\.so.*cannot open")),
    Rule(R.INFRA_ERROR, "evicted", "was evicted by Kubernetes", pattern=rx(
        r"\bEvicted\b|The node was low on resource|(?:pod|container)s? (?:was |were )?evict|eviction (?:threshold|manager"
        r"|signal|API)|ephemeral[- ]storage.*exceed")),
    Rule(R.INFRA_ERROR, "preempted", "lost its machine (preempted)", pattern=rx(
        r"preempt|spot (?:instance )?interruption|instance-action|imminent node shutdown|node shutdown|Shutdown"
        r" \w* ?node|NodeShutdown|terminated due to node|maintenance event|node was (?:drained|deleted|terminated)"
        r"|host maintenance|capacity (?:was )?reclaimed|reclaimed by the provider")),
    Rule(R.INFRA_ERROR, "node-lost", "lost its node", pattern=rx(
        r"NodeLost|node (?:\S+ )?(?:is |was )?(?:not ready|unreachable|lost)|\bNodeNotReady\b|node .* disappeared"
        r"|pod deleted|pod (?:was )?deleted during operation|lost (?:its|the) node|worker (?:node )?(?:lost|died)"
        r"|Executor lost|ExecutorLostFailure|lost executor|container .* exited because of a node|RayActorError.*died"
        r"|The actor died unexpectedly|worker died unexpectedly|Worker exited unexpectedly|raylet .* died"
        r"|ObjectLostError|NodeDiedError")),
    Rule(R.INFRA_ERROR, "image-pull", "could not pull its container image", pattern=rx(
        r"ErrImagePull|ImagePullBackOff|ErrImageNeverPull|InvalidImageName|Failed to pull image|pull access denied"
        r"|manifest (?:for \S+ )?(?:not found|unknown)|image .* not found|PodLaunchFailedException|Pod never started"
        r"|pulling image|Back-off pulling"
        r"|Pod took too long to start|repository does not exist or may require 'docker login'")),
    Rule(R.INFRA_ERROR, "unschedulable", "could not be scheduled on the cluster", pattern=rx(
        r"\bUnschedulable\b|FailedScheduling|\d+/\d+ nodes are available|Insufficient (?:nvidia\.com/gpu|cpu|memory)"
        r"|CapacityError|InsufficientInstanceCapacity|Unable to provision|insufficient capacity|out of capacity"
        r"|ZONE_RESOURCE_POOL_EXHAUSTED|resource pool exhausted|ResourceLimitExceeded|no capacity|capacity is not available"
        r"|didn't match (?:Pod's )?node affinity|exceeded quota|forbidden: exceeded quota")),
    Rule(R.INFRA_ERROR, "heartbeat-lost", "lost its worker (heartbeat stopped)", pattern=rx(
        r"did not emit heartbeat|heartbeat (?:timeout|lost|missed|expired)|without heartbeat|zombie|was killed externally"
        r"|Heartbeat of (?:TaskManager|JobManager|ResourceManager)|heartbeat .{0,60} timed out|no worker activity"
        r"|job appears to be stuck|workers? (?:were |was )?(?:lost|unresponsive)"
        r"|no longer in the running state|shouldn't be running anymore"
        r"|(?:externally|unexpectedly) (?:killed|terminated)|finished with state failed, but the task instance's state"
        r"|finished \(failed\) although the task says (?:it'?s|its) running|Executor .* reported that the task"
        r"|worker (?:went )?(?:offline|away)|lost (?:contact|connection) with (?:the )?(?:worker|scheduler)"
        r"|Crash detected|infrastructure (?:error|failure|issue)"
        r"|(?:process|container|pod|job) (?:for flow run .* )?exited (?:with )?(?:unexpectedly|non-zero status code"
        r" (?:1[3-4]\d|-\d+))")),
    Rule(R.INFRA_ERROR, "oom", "ran out of memory", pattern=rx(
        r"cannot allocate vector of size|Reached total allocation of|cannot allocate memory block")),
    Rule(R.INFRA_ERROR, "oom", "was killed for running out of memory", pattern=rx(
        r"killed due to memory pressure|memory pressure \(OOM\)")),
    Rule(R.INFRA_ERROR, "preempted", "lost its machine (preempted)", pattern=rx(r"termination is imminent")),
    Rule(R.INFRA_ERROR, "container-runtime", "could not be started by the container runtime", pattern=rx(
        r"CannotInspectContainerError|Could not transition to inspecting|OCI runtime (?:exec|create) failed"
        r"|unable to start container process|CreateContainerConfigError|CreateContainerError"),
         unless=rx(r"executable file not found")),
    Rule(R.INFRA_ERROR, "credentials", "had missing or wrong credentials", pattern=rx(
        r"unable to assume the role|Incorrect username or password|password authentication failed|invalid credentials"
        r"|Authentication failed|login failed for user")),
    Rule(R.INFRA_ERROR, "unschedulable", "could not get the resources it asked for", pattern=rx(
        r"Failed to schedule placement group|no nodes are available|No zone supports|ZONE_RESOURCE_POOL_EXHAUSTED"
        r"|does not have enough resources available|Self-bootstrap failure|ADD_NODES_FAILED|Unexpected startup failure"
        r"|Timeout while placing nodes|Failed to reach the driver")),
    Rule(R.INFRA_ERROR, "node-lost", "lost its node", pattern=rx(
        r"marked dead because|missed too many heartbeats|work-horse terminated unexpectedly|waitpid returned 9")),
    Rule(R.INFRA_ERROR, "network", "lost its connection to a service", pattern=rx(
        r"Connection to broker lost|Retry limit exceeded while trying to reconnect|scheduler-connection-lost"
        r"|lost the connection to the scheduler|Error while reading from (?:socket|\S+:\d+)")),
    Rule(R.INFRA_ERROR, "oom", "was killed for running out of memory", pattern=rx(r"systemd-oomd|\boomd attempting to kill")),
    Rule(R.INFRA_ERROR, "killed", "was killed (SIGKILL, usually out of memory)", pattern=rx(r"status=9/KILL")),
    Rule(R.INFRA_ERROR, "network", "lost its connection to a service", pattern=rx(
        r"All connection attempts failed|\bConnectError\b|FetchFailedException|Failed to fetch shuffle|Issue communicating with driver")),
    Rule(R.INFRA_ERROR, "service-unavailable", "hit a failure inside a service it uses", pattern=rx(
        r"Processing aborted due to error \d+|; incident \d+")),
    Rule(R.INFRA_ERROR, "worker-lost", "lost its worker", pattern=rx(
        r"have not registered within the timeout|probably it crashed during start|NodeStatusUnknown|Kubelet stopped posting")),
    Rule(R.INFRA_ERROR, "permissions", "was not allowed to write where it needed", pattern=rx(r"is not writable\b")),
    Rule(R.INFRA_ERROR, "segfault", "crashed in native code", pattern=rx(r"\bIllegal instruction\b|dumped core")),
    Rule(R.INFRA_ERROR, "image-pull", "could not pull its container image", pattern=rx(r"CannotPullContainerError")),
    Rule(R.INFRA_ERROR, "container-runtime", "could not be started by the container runtime", pattern=rx(
        r"\bCgroupError\b|could not create task's platform resources")),
    Rule(R.INFRA_ERROR, "unschedulable", "could not get the resources it asked for", pattern=rx(
        r"Resources are insufficient in region|insufficient (?:capacity|resources) in (?:region|zone)")),
    Rule(R.INFRA_ERROR, "preempted", "lost its machine (preempted)", pattern=rx(r"VMRecreatedDuringExecution")),
    Rule(R.INFRA_ERROR, "segfault", "crashed in native code", pattern=rx(r"caught segfault|R encountered a fatal error")),
    Rule(R.INFRA_ERROR, "disk-full", "ran out of disk space", pattern=rx(r"is over \d+% full")),
    Rule(R.INFRA_ERROR, "service-unavailable", "hit a failure inside a service it uses", pattern=rx(
        r"Failed to set task state|'code': 'API_ERROR'|Timed out trying to connect to")),
    Rule(R.INFRA_ERROR, "unschedulable", "could not get the resources it asked for", pattern=rx(
        r"^Waiting for workers$|no workers (?:arrived|available)")),
    Rule(R.INFRA_ERROR, "worker-lost", "lost its worker", pattern=rx(
        r"\bWorkerLostError\b|Worker exited prematurely|\bagent lost\b|runner has received a shutdown signal"
        r"|lost communication with the server|Client report stream closed|stream closed to scheduler"
        r"|Last heartbeat was sent \d+ ?ms ago|marked as dead|raylet (?:has )?died|\bNotReady\b|cordon and drain")),
    Rule(R.INFRA_ERROR, "cluster-launch", "could not get its cluster or machine", pattern=rx(
        r"Host EC2 .{0,40}terminated|Driver down|failing to launch|Cluster launch|cluster (?:failed to start|terminated unexpectedly)"
        r"|Termination reason: StartError|failed to create containerd task|error during startup"),
         unless=rx(r"executable file not found")),
    Rule(R.INFRA_ERROR, "network", "lost its connection to a service", pattern=rx(
        r"\bUnavailableError\b|StatusCode\.UNAVAILABLE|failed to connect to all addresses"
        r"|Failed to get the response\. Hanging\?|FailedToConnectException")),
    Rule(R.INFRA_ERROR, "access-denied", "was denied access", pattern=rx(r"\bACCESS_DENIED\b")),
    Rule(R.CANCELLED, "stopped", "was stopped on purpose", pattern=rx(r"\bsystemd\[\d+\]: Stopping\b")),
    Rule(R.INFRA_ERROR, "killed", "was killed (SIGKILL, usually out of memory)", pattern=rx(
        r"line \d+: +\d+ Killed\b|^Killed$|\bKilled\s+(?:python|java|\./)")),
    Rule(R.INFRA_ERROR, "killed", "was killed (SIGKILL, usually out of memory)", pattern=rx(
        r"Negsignal\.SIGKILL|return code -9\b|status code:? -9\b|exit(?:ed)? (?:with )?(?:code|status)[: ]+137\b"
        r"|exit code 137|signal: killed|SIGKILL|signal 9\b|\bKilled\s*$|terminated by signal 9")),
    Rule(R.INFRA_ERROR, "disk-full", "ran out of disk space", pattern=rx(
        r"No space left on device|\[Errno 28\]|\[WinError 112\]|ENOSPC|disk (?:is )?full|DiskFull|database or disk is full"
        r"|Disk quota exceeded|\[Errno 122\]|out of disk|insufficient (?:disk|storage) space|not enough space on the disk"
        r"|DiskPressure")),
    Rule(R.INFRA_ERROR, "io-error", "hit a storage input/output error", pattern=rx(
        r"Input/output error|\[Errno 5\]|\bEIO\b|Stale file handle|Read-only file system|\[Errno 30\]")),
    Rule(R.INFRA_ERROR, "credentials", "had missing or expired cloud credentials", pattern=rx(
        r"ExpiredToken|RequestExpired|TokenRefreshRequired|token (?:has )?expired|expired token|credentials? (?:have|has)"
        r" expired|NoCredentialsError|Unable to locate credentials|PartialCredentialsError|InvalidAccessKeyId"
        r"|SignatureDoesNotMatch|InvalidClientTokenId|(?:code|status|HTTP(?: Error)?)\W{0,3}401\b|\b401 Client Error"
        r"|Unauthorized for url|AuthenticationError|invalid api key|Incorrect API key|UnrecognizedClientException|invalid_grant|DefaultCredentialsError"
        r"|Could not automatically determine credentials|RefreshError|AuthFailure|security token included in the request"
        r" is (?:invalid|expired)|ClientAuthenticationError|CredentialUnavailableError|401 Unauthorized"
        r"|\bUnauthenticated\b|authentication (?:failed|required)|could not be authenticated")),
    Rule(R.INFRA_ERROR, "access-denied", "was denied access", pattern=rx(
        r"\bAccessDenied(?:Exception)?\b|Access Denied|\b403\b.{0,30}Forbidden|Forbidden.{0,20}\b403\b"
        r"|(?:code|status|HTTP(?: Error)?)\W{0,3}403\b|\b403 !="
        r"|PERMISSION_DENIED|Permission denied|\[Errno 13\]|PermissionError|AuthorizationFailed|AuthorizationPermissionMismatch|is not authorized to perform"
        r"|does not have (?:\S+ )?(?:permission|access)|insufficient permissions|AccessDeniedException")),
    Rule(R.INFRA_ERROR, "throttled", "was throttled by a service", pattern=rx(
        r"\bSlow ?Down\b|Throttl|RequestLimitExceeded|TooManyRequests|Too Many Requests|\b429\b|Rate ?exceeded"
        r"|rate limit|ProvisionedThroughputExceeded|RESOURCE_EXHAUSTED|quota exceeded for|RequestThrottled")),
    Rule(R.INFRA_ERROR, "dns", "could not resolve a host name", pattern=rx(
        r"Name or service not known|Temporary failure in name resolution|nodename nor servname|getaddrinfo failed"
        r"|Could not resolve host|\[Errno -[235]\]|NameResolutionError|Failed to resolve|no such host|NXDOMAIN"
        r"|DNS (?:lookup|resolution) fail")),
    Rule(R.INFRA_ERROR, "network", "lost its connection to a service", pattern=rx(
        r"Connection refused|Connection reset|connection (?:was )?(?:closed|aborted|lost)|Connection aborted"
        r"|\[Errno 1(?:04|10|11|13)\]|\[WinError 100(?:54|60|61)\]|Broken pipe|RemoteDisconnected|Max retries exceeded"
        r"|Read timed out|ReadTimeout|ConnectTimeout|ConnectTimeoutError|ReadTimeoutError|EndpointConnectionError"
        r"|ConnectionClosedError|ProtocolError|IncompleteRead|Failed to establish a new connection|Network is unreachable"
        r"|No route to host|could not connect to server|server closed the connection unexpectedly|Lost connection to"
        r"|Can't connect to|connection timed out|timed out (?:after|while) (?:connecting|waiting for (?:a )?response)"
        r"|dial tcp|i/o timeout|Request timed out|APITimeoutError|APIConnectionError|context deadline exceeded|timed out waiting for the condition|failed to save outputs"
        r"|Failed to establish pod watch|Unable to execute (?:HTTP )?request|(?:couldn't|could not|unable to) communicate with"
        r"|is (?:not reachable|unreachable)|cannot reach|(?-i:DEADLINE_EXCEEDED)|DeadlineExceededError"
        r"|(?:couldn't|could not|cannot|can not|unable to) connect|deadlock detected|could not serialize access"
        r"|Lock wait timeout exceeded|Deadlock found|database is locked"
        r"|socket\.timeout|SSL(?:Error|EOFError)|CERTIFICATE_VERIFY_FAILED|\bUNAVAILABLE\b|StatusCode\.UNAVAILABLE"
        r"|ServiceUnavailable|Service Unavailable|Bad Gateway|Gateway Time-?out|\b50[234]\b.{0,30}(?:error|server)"
        r"|InternalError.*(?:S3|We encountered an internal error)|ServerSelectionTimeoutError|OperationalError.*"
        r"(?:connect|server|timeout|SSL)|ClientConnectorError|ServerDisconnectedError|ChunkedEncodingError")),
    Rule(R.INFRA_ERROR, "service-unavailable", "got a server error from a service", pattern=rx(
        r"\b(?:HTTP(?: Error)?|status(?: code)?|error code|failed with (?:error )?code|response code)\W{0,3}50[0-4]\b"
        r"|\b50[0-4] (?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)|Internal Server Error"
        r"|server is overloaded|\b50[0-4] !=|InternalServerError|We encountered an internal error|InternalFailure"
        r"|internal error\.? Please try again|ServiceUnavailableException|ServiceException")),
    Rule(R.INFRA_ERROR, "storage-mount", "could not mount its storage", pattern=rx(
        r"unable to mount|MountError|failed to mount|mount(?:ing)? (?:failed|error)|FailedMount|MountVolume")),
    Rule(R.INFRA_ERROR, "network", "lost its connection to a service",
         types=("ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError",
                "ConnectionAbortedError", "RemoteDisconnected", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError",
                "ConnectTimeoutError", "EndpointConnectionError", "ProtocolError")),
    Rule(R.INFRA_ERROR, "network", "timed out talking to a service", types=("TimeoutError", "timeout"), pattern=rx(
        r"timed out|socket|urllib3|http|connect|\brecv|\bsend|Errno 110|ssl|grpc|\brpc\b")),
    # A bare TimeoutError (asyncio, anyio, concurrent.futures) is a time limit the task set itself.
    Rule(R.TIMEOUT, "time-limit", "ran past a time limit", types=("TimeoutError",)),
    # A log cut off inside a socket read still says where it was.
    Rule(R.INFRA_ERROR, "network", "was cut off while reading from a service", pattern=rx(
        r"[/\\](?:socket|ssl)\.py\"?, line \d+, in (?:readinto|recv_into|read|_safe_read)\s*\n\s*return self\._sock\.recv"
        r"|in _error_catcher\s*\n(?:.*\n){0,12}.*recv_into")),
    Rule(R.INFRA_ERROR, "crashed", "crashed (the orchestrator lost its process)", pattern=rx(
        r"\bCrashed\(|type=CRASHED|StateType\.CRASHED|(?:state|status)\W{0,3}crashed\b|(?-i:\bCRASHED\b)"
        r"|(?-i:SYSTEM_ERROR)|PIPELINE_STATE_FAILED.*(?:internal|system)")),
    Rule(R.INFRA_ERROR, "terminated", "was terminated (SIGTERM), likely by the platform", pattern=rx(
        r"Received SIGTERM|Negsignal\.SIGTERM|return code -15\b|status code:? -15\b|exit code 143\b|signal: terminated"
        r"|termination signal|terminated by signal 15"),
         unless=rx(r"not forwarding to steps|Container killed on request")),
    Rule(R.INFRA_ERROR, "terminated", "was terminated (SIGTERM), likely by the platform",
         types=("AirflowTaskTerminated",)),

    # A bare CANCELLED status, after the platform failures that make a scheduler cancel a step.
    Rule(R.CANCELLED, "cancelled", "was cancelled", pattern=rx(
        r"\bPipelineTaskFinalStatus\b.*\bCANCEL|(?:state|status|phase)\W{0,6}cancell?ed\b|(?-i:\bCANCEL(?:L)?ED\b)"
        r"|\b(?:job|stage|query|run) \d+ (?:was )?cancell?ed"),
         unless=rx(r"due to (?:task |upstream |a )?fail|time limit|fail(?:ed)? or (?:has been |was )?cancel|timeout"
                   r"|timed out|SparkContext (?:was )?shut ?down|failed \d+ times; aborting")),

    # -- a quality gate rejected the model --------------------------------------------------------
    Rule(R.BAD_SCHEMA, "dtype", "got data of the wrong type", pattern=rx(r"\bSchema mismatch for\b")),
    Rule(R.METRIC_REGRESSION, "threshold", "fell short of its metric threshold", pattern=rx(
        r"(?:accuracy|score|metric|quality|performance|benchmark) check failed|required ratio|\bREGRESSION \d+(?:\.\d+)?%"
        r"|\bregresses from\b|^\s*(?:AssertionError: )?assert (?:tensor\()?\d*\.\d+[^\n<>]{0,40}\)? [<>]=? \d*\.\d+\s*$"
        r"|is below `?--cov-fail-under|coverage failure: total of|significant change has been detected"
        r"|^\s*(?:AssertionError: )?assert [\d.]+ (?:<=?|>=?) [\d.]+(?: (?:<=?|>=?) [\d.]+)?\s*$"
        r"|(?:variance|latency|throughput|error rate|loss|perplexity) too (?:high|low)\b")),
    Rule(R.METRIC_REGRESSION, "gate", "was rejected by a quality gate", pattern=rx(
        r"not blessed|NOT_BLESSED|model validation failed|ModelValidation(?:Failed)?(?:Error|Exception)"
        r"|metric_validations_per_slice|validation_ok\W+false|value_threshold|change_threshold"
        r"|metric validation failed|quality gate|QualityGate|metric[_ -]regression|MetricRegression"
        r"|failed (?:the )?(?:model )?(?:evaluation|validation) (?:threshold|criteria|check)|performance (?:check|test)s? failed"
        r"|did not (?:meet|pass) (?:the )?(?:threshold|minimum|baseline|acceptance)"
        r"|\b(?:quality|release|promotion|eval(?:uation)?|statistical|deployment|acceptance)[ -]?gate\b"
        r"|failed .{0,30}\bgate\b|\bgate\b.{0,30}\b(?:failed|rejected|FAIL)\b|(?:candidate|model|challenger) (?:was )?rejected"
        r"|\bNO-GO\b|\bGO: False\b|Required threshold|gate criteri|regressions?\b[\s\S]{0,300}?baseline"
        r"|baseline[\s\S]{0,300}?\bregressions?\b|(?:scores?|performance|metrics?|accuracy)\W{0,4}(?:\*\*)?(?:decreased"
        r"|dropped|regressed|degraded)|Model Regression Test|!= -?\d+\.\d+ ± |expected = -?\d+\.\d+ ±"
        r"|comparison failed\. Calculated|Required: \w+ ?=|\"actual\": -?\d+\.\d+.{0,200}\"expected\": -?\d+\.\d+"
        r"|\"expected\": -?\d+\.\d+.{0,200}\"actual\": -?\d+\.\d+|model above (?:the )?threshold"
        r"|no (?:candidate |model )(?:met|passed|meets|passes|above|cleared)|following metrics failed|metrics? failed:"
        r"|golden values?|(?:slower|worse) than (?:the )?(?:\w+ )?baseline|more than \d+(?:\.\d+)?x of|\d(?:\.\d+)?x slower than"
        r"|learning tests?|successfully learned|Not successful: Actual|desired reward|reward (?:not reached|below)"
        r"|Regressions? detected|performance regression|regression detected|_threshold \[\w+\] ="
        r"|ground_truth=\d|measured=\d|Expected: -?\d+(?:\.\d+)? \| Measured|\d+(?:\.\d+)?% < \d+(?:\.\d+)?%"
        r"|Recovery testing failed|\"(?:pass|passed|passing)\":\s*false")),
    Rule(R.METRIC_REGRESSION, "threshold", "fell short of its metric threshold", pattern=rx(
        r"(?:higher|lower|greater|less|worse) than (?:the )?(?:threshold|baseline|tolerance|reference|allowed|target)"
        r"|\((?:maximum|minimum) allowed:|\(required: at least|below (?:the )?(?:baseline|threshold|tolerance)"
        r"|exceeds? (?:the )?(?:tolerance|allowed (?:drop|degradation))|(?:performance|accuracy|quality) regression detected"),
         unless=rx(r"memory|disk|heartbeat|cpu usage")),
    Rule(R.METRIC_REGRESSION, "threshold", "fell short of its metric threshold", pattern=rx(
        rf"\b{_METRIC}\b[^\n]{{0,80}}?(?:\bbelow\b|\bunder\b|less than|lower than|smaller than|worse than|greater than"
        rf"|higher than|above|exceeds?|<=?|>=?|not (?:above|below|greater|less)|did not (?:improve|beat|reach))"
        rf"[^\n]{{0,60}}?(?:threshold|baseline|minimum|maximum|min\b|max\b|required|expected|target|champion"
        rf"|production|previous|\d)"),
         unless=rx(r"\b(?:nan|inf|infinity)\b|features?,? but|expecting \d+ features|validator|failure cases|SchemaError")),
    Rule(R.METRIC_REGRESSION, "threshold", "fell short of its metric threshold", types=("AssertionError",), pattern=rx(
        r"\d\.\d+\D{1,60}?(?:not (?:greater|less|higher|lower|better)|!=|<=?|>=?|at (?:least|most)|expected|below|above"
        r"|threshold)|(?:expected|required|should be) (?:to (?:be|get) )?(?:at least|at most|>=?|<=?|above|below|higher"
        r"|lower)\D{0,40}\d|(?:not|isn't) (?:high|good|low) enough|too (?:low|high) to pass"),
         unless=rx(r"\b(?:rows?|len|length|count|shape|size|columns?|null|nan|duplicates?)\b")),
    Rule(R.METRIC_REGRESSION, "threshold", "fell short of its metric threshold", pattern=rx(
        rf"(?:threshold|baseline|champion)[^\n]{{0,60}}?\b{_METRIC}\b|\b{_METRIC}\b[^\n]{{0,40}}?(?:regress|degrad|dropped)"
        r"|score is not high enough|not (?:good|high) enough to pass"),
        unless=rx(r"\b(?:nan|inf)\b|validator|failure cases|SchemaError")),

    # A command missing from the image reads like a missing file: decide it before the data rules.
    Rule(R.CODE_ERROR, "missing-package", "is missing a command in its image", pattern=rx(
        r"command not found|executable file not found|not found in \$PATH|exec format error")),
    Rule(R.CODE_ERROR, "usage", "was called with wrong arguments", pattern=rx(
        r"unrecognized arguments?:|error: the following arguments are required|invalid choice:|usage: .*\n.*error:")),

    # -- the data's structure is wrong ------------------------------------------------------------
    Rule(R.BAD_SCHEMA, "dtype", "got data of the wrong type", pattern=rx(
        r"Metadata mismatch found|Mismatch in (?:joining )?column data types|is of type \w+(?: \w+)? but expression is of type"
        r"|DatatypeMismatch|Numeric value '[^']*' is not recognized|Cannot index (?:string|number|array|object) with"
        r"|Too many columns specified|inconsistent (?:columns|schema)|Could not convert .{0,40} to (?:NUMERIC|INT64|FLOAT64|BOOL)"
        r"|Invalid (?:NUMERIC|INT64|FLOAT64|BOOL|DATE|TIMESTAMP) value|dtype mismatch|mismatched dtypes|Found +\| +Expected")),
    Rule(R.BAD_SCHEMA, "dtype", "got data of the wrong type", pattern=rx(
        r"Cannot up cast|StateSchemaNotCompatible|schema doesn't match|doesn't match (?:to )?the schema"
        r"|neither a decimal digit|'type': '\w+_(?:parsing|type)'|Parameter validation failed for flow"
        r"|cannot be inserted into column")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it needs", pattern=rx(
        r"not found inside \w+|Can't subset columns that don't exist|Column `[^`]+` doesn't exist"
        r"|Problem with `\w+\(\)` (?:column|input)|✖ object '[^']+' not found")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it needs", pattern=rx(
        r"Column `[^`]+`(?:\.`[^`]+`)? cannot be resolved|cannot resolve '?`[^`]+`")),
    Rule(R.BAD_SCHEMA, "format", "got messages in a format it does not accept", pattern=rx(
        r"\bContentDisallowed\b|Refusing to deserialize")),
    Rule(R.BAD_SCHEMA, "format", "got records shaped differently from what it expects", pattern=rx(
        r"Row \d+ has \d+ values, but \w+ only has \d+ columns|Received and deleted unknown message"
        r"|kwargs must be a dict|Invalid task ignored")),
    Rule(R.BAD_SCHEMA, "validation", "got a record its schema refuses", pattern=rx(
        r"found invalid field \w+ for|unknown field \"[^\"]+\" in io\.k8s|error validating data")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it needs", pattern=rx(
        r"same number of columns|DatasetGenerationCastError|must have the same columns|No column \S+ found\. Available are")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it needs", pattern=rx(
        r"columns in the computed data do not match|Order of columns does not match|cols? (?:are|is) missing from"
        r"|columns? (?:are|is) missing from|enforced contract|contract (?:\S+ ){0,3}fail|MatchError: .{0,40}\(of class")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it needs", pattern=rx(
        r"requires the columns?\b|\bMissing key: '|\bno such field\b|column \S+ (?:of relation \S+ )?already exists"
        r"|must be an? (?:STRING|string|number|integer|int|boolean|bool|list|array|object)\b")),
    Rule(R.BAD_SCHEMA, "dtype", "got data of the wrong type", pattern=rx(
        r"\bInvalidTextRepresentation\b|invalid input syntax for (?:type )?\w+|\bValidationError\(\[")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it needs", pattern=rx(
        r"undefined columns selected|未定义的列|Error in eval\(jsub|\"type\":\s*\"missing\"|\bField required\b")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it expects", pattern=rx(
        r"not in index|None of .* are in the \[?(?:columns|index)|ColumnNotFound|\bcolumns?\)? (?:\S+ ){0,3}"
        r"(?:not found|do(?:es)? not exist|(?:is|are) missing|not in (?:the )?(?:dataframe|frame|table|schema))"
        r"|missing (?:required )?columns?|cannot resolve .* given input columns|UNRESOLVED_COLUMN|Unrecognized name"
        r"|UndefinedColumn|invalid identifier|Unknown column|no such column|No such struct field|unexpected columns?"
        r"|columns? mismatch|Field .* not found in (?:source )?schema|KeyError: \"?\[?'?\w*'?\]? ?not in index"
        r"|references column position|line contains only \d+ columns|wrong number of (?:columns|fields)")),
    Rule(R.BAD_SCHEMA, "missing-column", "did not find a column it expects", types=("KeyError",), pattern=rx(
        r"pandas[/\\](?:core[/\\](?:indexes|frame|generic|series|indexing)|_libs)|polars|pyarrow|in get_loc|\bdf\[|\.loc\["
        r"|\bMap:\s+\d+%|\bexamples?\[\w+"
        r"|\.iloc\[|dataframe|\[\[.*\]\]|datasets[/\\]|arrow_dataset|formatting")),
    Rule(R.BAD_SCHEMA, "feature-mismatch", "got features that do not match the model", pattern=rx(
        r"features?,? but \w+ is expecting \d+ features|feature_names mismatch|feature names (?:should|must) match"
        r"|number of features in (?:the )?data .* (?:is not the same|does not match|differs)"
        r"|Feature names (?:unseen|seen) at fit time|number of features .* (?:does not|must) match|expected \d+ features"
        r"|Feature shape mismatch|feature_names must be|columns are missing: \{")),
    Rule(R.BAD_SCHEMA, "dtype", "got data of the wrong type", pattern=rx(
        r"ArrowTypeError|ArrowInvalid.*(?:schema|type|cast|convert)|Schema at index \d+ was different|schema mismatch"
        r"|column cannot be converted|Expected: \w+, Found: \w+|changed (?:type )?from \w+ to \w+|Provided Schema does not match"
        r"|dimension (?:mismatch|\d+ does not match)|does not match the dimension|expected dim(?:ension)? \d+"
        r"|requires equal schemas|schemas? (?:are not|aren't) (?:equal|the same|compatible)|(?:have|has) different (?:d)?types"
        r"|different (?:d)?types? (?:in|between)|type mismatch|Anomaly in feature|anomal(?:y|ies) (?:found|detected) in"
        r"|values? missing from the schema|schema anomal|requires \"schema\" and \"payload\"|schemas\.enable"
        r"|incompatible schema|(?:Unable|Cannot|Can't|Could not|Couldn't|Failed to) (?:safely )?(?:cast|convert)"
        r"|could not convert|column names (?:don't|do not) match"
        r" string to (?:float|int)|invalid literal for int\(\)|Expected bytes, got|dtype (?:mismatch|of column)"
        r"|expected series .* to have type|to have type \w+, got|(?:does not|doesn't) match (?:the )?(?:expected )?"
        r"schema|SchemaMismatch|data type mismatch|DATATYPE_MISMATCH|incompatible types?|mismatched (?:input|data) types?"
        r"|Object of type .* is not (?:a )?(?:valid|supported) dtype|Can(?:no|')t mix (?:types|dtypes)"
        r"|TypeError: (?:unsupported operand type|'<' not supported between instances of 'str' and)"),
         unless=rx(r"magic bytes|Could not open Parquet|not a parquet file|Invalid parquet|corrupt")),
    Rule(R.BAD_SCHEMA, "validation", "got records that fail validation",
         types=("ValidationError", "SchemaError", "SchemaErrors", "SchemaDefinitionError", "SchemaMismatchError",
                "ValidationException", "DataValidationError"),
         unless=rx(r"failed element-wise validator|failed series or dataframe validator|contains (?:null|duplicate|nan)"
                   r"|Failure in test|expectation.*(?:unique|null|between|values)")),
    Rule(R.BAD_SCHEMA, "validation", "got records that fail validation", pattern=rx(
        r"\d+ validation errors? for|\[type=(?:missing|extra_forbidden|\w+_type|\w+_parsing|literal_error|enum)\b"
        r"|\(type=(?:value_error|type_error)\.\w+\)|extra fields not permitted|expect_(?:column_to_exist|table_columns|column_values_to_be_(?:of_type|in_type_list)"
        r"|table_column_count)|schema (?:validation|check) failed|does not conform to (?:the )?schema")),

    # -- the data itself is wrong -----------------------------------------------------------------
    Rule(R.CODE_ERROR, "missing-package", "is missing a command or package in its image", pattern=rx(
        r"there is no package called|exec user process caused|/bin/\w+: not found|: \d+: \S+: not found"
        r"|(?:bash|sh|zsh|exec)(?:: line \d+)?: \S+: not found|/usr/bin/env: '?\w+'?: No such file"
        r"|: line \d+: /\S+: No such file or directory"
        r"|FileNotFoundException: File \S+\.jar|No FileSystem for scheme")),
    Rule(R.CODE_ERROR, "bug", "raised an error in its code", pattern=rx(
        r"could not find function|unbound variable|\bMissingSchema\b|Invalid URL '[^']*': No sch|PARSE_SYNTAX_ERROR"
        r"|syntax error at or near|Error(?: in [^\n]*)?: object '[^']+' not found|error in your SQL syntax"
        r"|Error in python: \w+Error|\bis not TRUE\b|syntax error: unexpected end of file|Syntax error: end of file unexpected"
        r"|unexpected EOF while looking for matching|Invalid schema for")),
    Rule(R.CODE_ERROR, "missing-package", "is missing a package its code needs", pattern=rx(
        r"Could not find a version that satisfies|No matching distribution found"
        r"|(?:lib|library|package|module) \S+ (?:is )?not installed|Init scripts? failed|init script \S+ failed")),
    Rule(R.CODE_ERROR, "bug", "raised an error in its code", pattern=rx(
        r"Invalid path '\$\.|States\.Runtime|not in registry|\bNotRegistered\b|Received unregistered task"
        r"|\bdivision by zero\b")),
    Rule(R.DATA_ERROR, "empty", "got empty input data", pattern=rx(
        r"Unable to infer schema for|did not find any (?:docs|documents|data|rows|records|files)|out of bounds for size 0"
        r"|differing number of rows: (?:0, \d+|\d+, 0)\b"
        r"|found no (?:docs|documents|data|rows|records)")),
    Rule(R.DATA_ERROR, "corrupt", "could not read corrupt input", pattern=rx(
        r"CSV parse error|Extra data: line \d+ column|Expecting value: line \d+|Unterminated string starting at"
        r"|invalid compressed data|Unexpected EOF in archive|not in gzip format|file format error|Invalid file format|\(corrupted\?\)"
        r"|does not appear to be in valid \w+ format")),
    Rule(R.DATA_ERROR, "missing-input", "could not find its input", pattern=rx(
        r"must exist for|\(not found\) Artifact|Artifact not found|Unable to find any artifacts|Schema '[^']+' does not exist"
        r"|FileNotFoundException|path \(\S+\) does not exist|does not exist in current working directory|blob does not exist")),
    Rule(R.DATA_ERROR, "quality-check", "failed a data quality check", pattern=rx(
        r"The following tests have failed|'success': False")),
    Rule(R.CODE_ERROR, "bug", "raised an error in its code", pattern=rx(r"did not include the specified metric")),
    Rule(R.DATA_ERROR, "rejected-rows", "had input rows rejected", pattern=rx(
        r"too many errors|Too many bad records|max_?bad_?records|rows? (?:were |was )?rejected|rejected \d+ rows?"
        r"|Error while reading data, error message|Load into table .{0,40} failed|stl_load_errors")),
    Rule(R.DATA_ERROR, "invalid-value", "got values it cannot read", pattern=rx(
        r"(?:Timestamp|Date|Time) '[^']*' is not recognized|Found character .{1,6} instead of field delimiter"
        r"|End of record reached while expected|NA/NaN/Inf in|missing values in object|ParquetDecodingException"
        r"|Can not read value at \d+ in block|could not read page")),
    Rule(R.DATA_ERROR, "missing-input", "could not find its input", pattern=rx(
        r"\b404 Client Error|returned 404\b|\b404 Not Found\b.{0,40}(?:url|http)")),
    Rule(R.DATA_ERROR, "missing-input", "could not find its input", pattern=rx(
        r"\bNoSuchKey\b|The specified key does not exist|\bNoSuchBucket\b|specified bucket does not exist"
        r"|HeadObject operation: Not Found|\(404\).*(?:Not Found|HeadObject|GetObject)|Path does not exist"
        r"|PATH_NOT_FOUND|No (?:files|objects|data) (?:found|matched)|matched no files|does not match any files"
        r"|\bFile \S+ not found|\bfile (?:\S+ )?(?:was )?not found|\bTable\b.* (?:not found|does not exist)|relation .* does not exist|UndefinedTable|TABLE_OR_VIEW_NOT_FOUND"
        r"|Dataset .* (?:not found|was not found)|blob .* (?:not found|does not exist)|BlobNotFound|ResourceNotFound"
        r"|object .* (?:not found|does not exist)|partition .* (?:not found|does not exist|missing)|No such object"
        r"|NoSuchObject|No (?:\w+ ){0,2}(?:files?|objects?|keys|records) (?:were )?(?:found|matched|exist)"
        r"|no files? (?:found )?(?:in|under|at) (?:path|prefix|the)|Not found: (?:Table|Dataset|URI|Files?)")),
    Rule(R.DATA_ERROR, "missing-input", "could not find its input", types=("FileNotFoundError",)),
    Rule(R.DATA_ERROR, "missing-input", "could not find its input", pattern=rx(
        r"No such file or directory|\[Errno 2\]|\[WinError [23]\]|cannot find the (?:file|path) specified")),
    Rule(R.DATA_ERROR, "too-long", "got inputs longer than the model accepts", pattern=rx(
        r"maximum context length|context_length_exceeded|too many tokens|exceeds? (?:the )?(?:model'?s? )?(?:maximum )?"
        r"(?:context|token) (?:length|limit|window)|Token indices sequence length is longer than")),
    Rule(R.DATA_ERROR, "empty", "got empty input data", pattern=rx(
        r"EmptyDataError|No columns to parse from file|Found array with 0 sample|0 samples?\b|empty (?:dataframe|dataset"
        r"|data ?frame|file|input|table|partition|result)|(?:dataframe|dataset|file|input|table) (?:is|was) empty"
        r"|no (?:rows|records|data) (?:found|returned|to process)|(?:returned|has|with|contains|found|got) 0 (?:rows|records)"
        r"(?!, but expected)|n_samples=0|zero-size array"
        r"|num_samples should be a positive integer value, but got num_samples=0")),
    Rule(R.DATA_ERROR, "nan", "got NaN or infinite values", pattern=rx(
        r"contains? NaN|Input (?:X |y )?contains (?:NaN|infinity)|infinity or a value too large|\bNaN values?\b"
        r"|loss (?:is|became|went|turned)? ?(?:nan|inf)|nan loss|non-finite (?:loss|values?)|NaN or Inf found"
        r"|found (?:nan|inf)|\bnan\b.{0,20}(?:detected|encountered)|contains (?:null|missing) values"
        r"|non-nullable .* contains null|Cannot convert non-finite values|(?:loss|grad_norm)\w*['\"]?\s*[:=]\s*['\"]?nan\b"
        r"|loss scale (?:already at minimum|collapsed)|Current loss scale already at minimum")),
    Rule(R.DATA_ERROR, "corrupt", "could not read corrupt input data", pattern=rx(
        r"magic bytes|Parquet (?:file|footer)|Invalid parquet|corrupt(?:ed)? (?:file|data|parquet|csv|archive|image|record"
        r"|input|block|page|footer|header|zip|gzip|dataset|shard|tfrecord)|(?:file|data|dataset|archive) (?:is |was )?"
        r"corrupt|ParserError|Error tokenizing data|unexpected end of (?:file|data|stream)|(?:file|data|image|record"
        r"|stream|archive) (?:is |was )?truncated|truncated (?:file|data|record|gzip|archive|tfrecord)|BadZipFile"
        r"|not a gzip(?:ped)? file|CRC check failed|UnicodeDecodeError|invalid (?:start|continuation) byte"
        r"|malformed (?:csv|json|record|line|row|file|input|data|parquet)|could not be parsed|JSONDecodeError"
        r"|Expecting value: line \d+|Could not open Parquet input source|cannot identify image file"
        r"|UnidentifiedImageError|image file is truncated|not a valid image|not a valid JSON|HIVE_BAD_DATA"
        r"|HIVE_CURSOR_ERROR|Unterminated string|Unknown magic byte|Error deserializing|deserializ(?:ation|e) (?:error"
        r"|failed)|serialization error|Converting byte\[\] to Kafka Connect data failed|connect\.errors\.DataException"
        r"|SerializationException|Failed to (?:load|parse|read) \w+ data|could not (?:load|parse|read) (?:the )?"
        r"(?:data|input|records?)")),
    Rule(R.DATA_ERROR, "duplicates", "found duplicate keys in its input", pattern=rx(
        r"duplicate (?:key|label|row|entr|value|index|primary)|duplicates? (?:found|detected)|not unique|uniquely valued"
        r"|has duplicates|contains duplicate|Merge keys are not unique|UniqueViolation|unique constraint"
        r"|Duplicate entry|Index has duplicate keys|duplicate (?:axis|labels?)|\bduplicates\b|\bduplication\b"
        r"|duplicate_\w+|multiple source rows matched|modify the same target row"), unless=rx(r"task.?id|DuplicateTaskId|keyword argument|duplicate argument|plugin|registr")),
    Rule(R.DATA_ERROR, "quality-check", "failed a data quality check", pattern=rx(
        r"Failure in test|failed element-wise validator|failed series or dataframe validator|expectation.*failed"
        r"|Validation (?:of|for) .* failed|data (?:quality|validation) (?:check )?fail|row count|rows? (?:count )?"
        r"(?:mismatch|below|above|less than|expected)|leakage|data drift|DataDrift|great_expectations.*(?:False|fail)"
        r"|(?:null|missing) (?:rate|ratio|fraction)|expect_(?:column|table|multicolumn|compound|select)\w+"
        r"|inconsistent numbers of samples|configured to fail if|Got \d+ results?, configured|\d+/\d+ checks? FAILED"
        r"|must exist in .* \[FAILED\]|checks? (?:FAILED|failed):"), unless=rx(r"failed with error: \w*Error|is not callable")),

    # -- a bug in the pipeline's code, or a missing package ----------------------------------------
    Rule(R.CODE_ERROR, "missing-package", "is missing a package in its environment",
         types=("ModuleNotFoundError", "ImportError", "PackageNotFoundError")),
    Rule(R.CODE_ERROR, "missing-package", "is missing a command in its image", pattern=rx(
        r"command not found|executable file not found|No module named|not found in \$PATH|exec format error"
        r"|Notebook not found|notebook .* does not exist|script .* not found|No such file or directory: '[^']+\.(?:py|ipynb|sh)'"
        r"|ClassNotFoundException|NoClassDefFoundError|cannot find symbol|undefined symbol|cannot open shared object"
        r" file")),
    Rule(R.CODE_ERROR, "device-assert", "hit a device-side assertion in its code", pattern=rx(
        r"device-side assert(?:ion)? triggered|CUDA error: device-side assert")),
    Rule(R.CODE_ERROR, "bug", "raised an error in its code",
         types=("TypeError", "NameError", "AttributeError", "SyntaxError", "NotImplementedError", "RecursionError",
                "ZeroDivisionError", "ArithmeticError", "IndexError", "KeyError", "AssertionError", "LookupError",
                "UnboundLocalError", "StopIteration", "DagCycleException", "AirflowDagCycleException",
                "DuplicateTaskIdFound", "ParamValidationError", "ParameterTypeError", "TemplateSyntaxError",
                "UndefinedError")),
    Rule(R.CODE_ERROR, "bug", "raised an error in its code", pattern=rx(
        r"Compilation Error|Broken DAG|ParameterBindError|ParameterTypeError|missing \d+ required positional argument"
        r"|maximum recursion depth exceeded|Expected all tensors to be on the same device|Expected object of"
        r" (?:device|scalar) type|shapes cannot be multiplied|size mismatch for|Sizes of tensors must match"
        r"|The size of tensor a \(\d+\) must match|Trying to backward through the graph a second time"
        r"|does not require grad and does not have a grad_fn|modified by an inplace operation"
        r"|Expected input batch_size \(\d+\) to match target batch_size|got an unexpected keyword"
        r"|takes \d+ positional arguments? but \d+ (?:were|was) given"
        r"|unexpected keyword argument|object is not (?:callable|subscriptable|iterable)|has no attribute")),

    # -- exit codes alone ---------------------------------------------------------------------------
    Rule(R.INFRA_ERROR, "killed", "was killed (exit 137, usually out of memory)", exit_codes=(137, -9)),
    Rule(R.INFRA_ERROR, "terminated", "was terminated (SIGTERM), likely by the platform", exit_codes=(143, -15)),
    Rule(R.INFRA_ERROR, "segfault", "crashed in native code (segmentation fault)", exit_codes=(139, -11)),
    Rule(R.INFRA_ERROR, "segfault", "crashed in native code (segmentation fault)", pattern=rx(
        r"Segmentation fault|SIGSEGV|core dumped|Fatal Python error: Segmentation|double free or corruption"
        r"|malloc\(\): (?:corrupted|memory corruption)")),
    Rule(R.INFRA_ERROR, "aborted", "aborted in native code (SIGABRT)", exit_codes=(134, -6)),
    Rule(R.INFRA_ERROR, "bus-error", "crashed (SIGBUS, often out of shared memory)", exit_codes=(135, -7)),
    Rule(R.INFRA_ERROR, "container-runtime", "could not be started by the container runtime", exit_codes=(125,)),
    Rule(R.CODE_ERROR, "missing-package", "could not execute a command in its image (exit 126)", exit_codes=(126,)),
    Rule(R.CODE_ERROR, "missing-package", "ran a command its image does not have (exit 127)", exit_codes=(127,)),
    Rule(R.CODE_ERROR, "usage", "was called with wrong arguments (exit 2)", exit_codes=(2,),
         unless=rx(r"\S")),
)



# -- what the orchestrator or platform reports apart from the text ------------------------------
#: ``(signal, value, reason, detail, cause, strong)``. A strong signal decides before any text rule
#: (Kubernetes says OOMKilled: the text cannot know better); a weak one only where the text rules
#: found nothing (Prefect says Crashed, but a traceback may say why).
SIGNALS: tuple[tuple[str, str, R, str, str, bool], ...] = (
    ("termination_reason", "oomkilled", R.INFRA_ERROR, "oom", "was killed for running out of memory (OOMKilled)", True),
    ("termination_reason", "evicted", R.INFRA_ERROR, "evicted", "was evicted by Kubernetes", True),
    ("termination_reason", "deadlineexceeded", R.TIMEOUT, "deadline", "ran past its deadline (DeadlineExceeded)", True),
    ("termination_reason", "preempted", R.INFRA_ERROR, "preempted", "lost its machine (preempted)", True),
    ("termination_reason", "preempting", R.INFRA_ERROR, "preempted", "lost its machine (preempted)", True),
    ("termination_reason", "nodeshutdown", R.INFRA_ERROR, "preempted", "lost its machine (node shutdown)", True),
    ("termination_reason", "imagepullbackoff", R.INFRA_ERROR, "image-pull", "could not pull its container image", True),
    ("termination_reason", "errimagepull", R.INFRA_ERROR, "image-pull", "could not pull its container image", True),
    ("termination_reason", "containercannotrun", R.INFRA_ERROR, "container-runtime",
     "could not be started by the container runtime", True),
    ("termination_reason", "starterror", R.INFRA_ERROR, "container-runtime",
     "could not be started by the container runtime", True),
    ("state", "cancelled", R.CANCELLED, "cancelled", "was cancelled", True),
    ("state", "cancelling", R.CANCELLED, "cancelled", "was cancelled", True),
    ("state", "canceled", R.CANCELLED, "cancelled", "was cancelled", True),
    ("state", "timed_out", R.TIMEOUT, "execution-timeout", "exceeded its time limit", True),
    ("state", "timedout", R.TIMEOUT, "execution-timeout", "exceeded its time limit", True),
    ("state", "crashed", R.INFRA_ERROR, "crashed", "crashed: the orchestrator lost its process", False),
    ("state", "lost", R.INFRA_ERROR, "process-lost", "ended without reporting: its process was lost", False),
    ("signal", "9", R.INFRA_ERROR, "killed", "was killed (SIGKILL)", False),
    ("signal", "sigkill", R.INFRA_ERROR, "killed", "was killed (SIGKILL)", False),
    ("signal", "15", R.INFRA_ERROR, "terminated", "was terminated (SIGTERM)", False),
    ("signal", "sigterm", R.INFRA_ERROR, "terminated", "was terminated (SIGTERM)", False),
    ("signal", "2", R.CANCELLED, "interrupted", "was interrupted (SIGINT)", False),
    ("signal", "sigint", R.CANCELLED, "interrupted", "was interrupted (SIGINT)", False),
)


def rules_table(rules: tuple[Rule, ...] = BUILTIN_RULES) -> str:
    """The rules as a Markdown table (docs/failure-reasons.md embeds it; a test keeps the two equal)."""
    rows = ["| # | reason | detail | the sentence says | matches on |", "|---|---|---|---|---|"]
    for number, rule in enumerate(rules, start=1):
        signals = []
        if rule.types:
            signals.append("exception " + ", ".join(f"`{name}`" for name in rule.types))
        if rule.pattern is not None:
            alternatives = [a for a in _top_level_alternatives(rule.pattern.pattern) if a]
            shown = " · ".join(f"`{a}`" for a in alternatives[:3]).replace("|", "\\|")
            more = len(alternatives) - 3
            signals.append(f"text {shown}" + (f" and {more} more" if more > 0 else ""))
        if rule.exit_codes:
            signals.append("exit code " + ", ".join(str(code) for code in rule.exit_codes))
        if rule.unless is not None:
            signals.append("unless the text shows a counter-sign")
        rows.append(f"| {number} | `{rule.reason.value}` | {f'`{rule.detail}`' if rule.detail else ''} | "
                    f"{rule.cause} | {'; '.join(signals)} |")
    return "\n".join(rows)


def _top_level_alternatives(pattern: str) -> list[str]:
    parts, depth, current, escaped = [], 0, "", False
    for char in pattern:
        if escaped:
            current, escaped = current + char, False
            continue
        if char == "\\":
            current, escaped = current + char, True
            continue
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p.replace("\\b", "").replace("`", "'") for p in parts]


def write_into(path: str) -> None:
    """Replace the table between the ``rules:start`` and ``rules:end`` markers of a Markdown file."""
    with open(path, encoding="utf-8") as handle:
        document = handle.read()
    head, rest = document.split("<!-- rules:start -->", 1)
    _, tail = rest.split("<!-- rules:end -->", 1)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{head}<!-- rules:start -->\n{rules_table()}\n<!-- rules:end -->{tail}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_into(sys.argv[2])  # python -m orchestrack.failure_rules --write docs/failure-reasons.md
    else:
        print(rules_table())
