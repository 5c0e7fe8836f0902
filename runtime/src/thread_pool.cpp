#include "ebm/thread_pool.h"

#include <algorithm>

namespace ebm {

int ThreadPool::hardware_threads() {
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  return 1;
#else
  return std::max(1u, std::thread::hardware_concurrency());
#endif
}

ThreadPool::ThreadPool(int threads) {
  size_ = threads <= 0 ? hardware_threads() : threads;
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  size_ = 1;
#endif
  for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  unsigned seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    while (next_ < tasks_) {
      const int i = next_++;
      ++running_;
      lock.unlock();
      try {
        (*job_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> relock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      lock.lock();
      --running_;
    }
    done_.notify_all();
  }
}

void ThreadPool::run(int tasks, const std::function<void(int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (int i = 0; i < tasks; ++i) fn(i);
    return;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &fn;
  tasks_ = tasks;
  next_ = 0;
  error_ = nullptr;
  ++generation_;
  wake_.notify_all();
  while (next_ < tasks_) {  // the caller works too
    const int i = next_++;
    ++running_;
    lock.unlock();
    try {
      fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> relock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    lock.lock();
    --running_;
  }
  done_.wait(lock, [&] { return running_ == 0 && next_ >= tasks_; });
  job_ = nullptr;
  tasks_ = 0;
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace ebm
