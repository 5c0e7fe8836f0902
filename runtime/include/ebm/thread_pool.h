// A fixed pool of worker threads that runs one parallel loop at a time. Natively it uses
// std::thread; in a WebAssembly build without pthreads it runs everything on the caller's thread
// (the page parallelises with Web Workers instead).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ebm {

class ThreadPool {
 public:
  // threads <= 0 means one per hardware thread.
  explicit ThreadPool(int threads = 1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }
  // Calls fn(i) for every i in [0, tasks), spread over the pool (the caller's thread included),
  // and returns when all are done. The first exception thrown by a task is rethrown here.
  void run(int tasks, const std::function<void(int)>& fn);

  static int hardware_threads();

 private:
  void worker_loop();
  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int tasks_ = 0, next_ = 0, running_ = 0;
  unsigned generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace ebm
