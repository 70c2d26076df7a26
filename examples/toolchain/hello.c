#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *greeting = getenv("GREETING");
    printf("%s\n", greeting ? greeting : "hello");
    return 0;
}
