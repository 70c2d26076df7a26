// A small C++ program, so the toolchain step really compiles and links something.
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

int main() {
    const char *greeting = std::getenv("BENCH_APP_GREETING");
    std::map<std::string, int> words;
    std::string text = greeting ? greeting : "hello";
    std::string word;
    for (char c : text + " ") {
        if (c == ' ') {
            if (!word.empty()) ++words[word];
            word.clear();
        } else {
            word += c;
        }
    }
    std::cout << text << " (" << words.size() << " distinct words)" << std::endl;
    return 0;
}
