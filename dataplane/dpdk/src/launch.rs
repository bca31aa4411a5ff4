//! Running closures on EAL lcores, scoped like `std::thread::scope`: borrowed state may be lent to
//! them because every worker has finished before [`run_on_lcores`] returns.

use std::any::Any;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::Eal;

/// The EAL lcores enabled in this process: the main one first, then the workers in order.
pub fn lcores(_eal: &Eal) -> Vec<u32> {
    // SAFETY: these read EAL's lcore configuration, set up by rte_eal_init (we hold an Eal).
    unsafe {
        let main = dpdk_sys::rte_get_main_lcore();
        let mut v = vec![main];
        let mut id = dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0);
        while id < dpdk_sys::RTE_MAX_LCORE {
            v.push(id);
            id = dpdk_sys::rte_get_next_lcore(id, 1, 0);
        }
        v
    }
}

type Task<'env> = Box<dyn FnOnce() + Send + 'env>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Box<Task> leaked by run_on_lcores for this launch, taken back once.
    let task: Box<Task<'static>> = unsafe { Box::from_raw(arg.cast()) };
    // A panic must not unwind into C.
    match catch_unwind(AssertUnwindSafe(task)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Why a set of lcore tasks did not all complete.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{tasks} tasks but only {lcores} EAL lcores: give EAL more (--lcores) or run fewer cores")]
    NotEnoughLcores { tasks: usize, lcores: usize },
    #[error("rte_eal_remote_launch on lcore {lcore} failed ({ret})")]
    Launch { lcore: u32, ret: i32 },
    #[error("the task on worker lcore {0} panicked")]
    WorkerPanicked(u32),
}

/// Runs `tasks[0]` on the calling (main) lcore and each further task on a worker lcore, and
/// returns once all have finished. A panic in the main task is re-raised after the workers are
/// done; a panicking worker is reported as an error.
pub fn run_on_lcores<'env>(eal: &Eal, mut tasks: Vec<Task<'env>>) -> Result<(), LaunchError> {
    let cores = lcores(eal);
    if tasks.len() > cores.len() {
        return Err(LaunchError::NotEnoughLcores { tasks: tasks.len(), lcores: cores.len() });
    }
    if tasks.is_empty() {
        return Ok(());
    }
    let main_task = tasks.remove(0);
    let mut launched = Vec::new();
    let mut launch_error = None;
    for (task, &lcore) in tasks.into_iter().zip(&cores[1..]) {
        // SAFETY: the 'env borrow is extended to 'static only for the launch: every launched
        // worker is waited for below (rte_eal_wait_lcore) before this function returns, on every
        // path, so nothing the task borrows can be dropped while it runs.
        let task: Task<'static> = unsafe { std::mem::transmute::<Task<'env>, Task<'static>>(task) };
        let arg = Box::into_raw(Box::new(task)).cast::<c_void>();
        // SAFETY: the lcore is a worker in WAIT state; trampoline takes arg back exactly once.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if ret != 0 {
            // SAFETY: the launch failed, so the task was not handed over: reclaim and drop it.
            drop(unsafe { Box::from_raw(arg.cast::<Task<'static>>()) });
            launch_error = Some(LaunchError::Launch { lcore, ret });
            break;
        }
        launched.push(lcore);
    }
    let main_result: Result<(), Box<dyn Any + Send>> =
        if launch_error.is_none() { catch_unwind(AssertUnwindSafe(main_task)) } else { Ok(()) };
    let mut worker_error = None;
    for lcore in launched {
        // SAFETY: lcore was launched above and is waited for exactly once.
        if unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) } != 0 {
            worker_error.get_or_insert(LaunchError::WorkerPanicked(lcore));
        }
    }
    if let Err(panic) = main_result {
        std::panic::resume_unwind(panic);
    }
    match (launch_error, worker_error) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    }
}
