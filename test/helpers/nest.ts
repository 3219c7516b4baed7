/**
 * A NestJS caller as a platform service has it: the `ClientProxy` that `ClientsModule` registers
 * as `NATS_SERVICE`, connected as the APP service user.
 */
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { ServiceUser } from '../../src/infra/natsconf.js';
import type { TestNats } from './nats.js';

/** A connected `ClientProxy` on `server`; close it with `close()`. */
export async function nestCaller(server: TestNats): Promise<ClientProxy> {
  const nest = ClientProxyFactory.create({
    transport: Transport.NATS,
    options: {
      servers: [server.url],
      user: ServiceUser.Service,
      pass: server.keys.server.servicePassword,
    },
  });
  await nest.connect();
  return nest;
}
